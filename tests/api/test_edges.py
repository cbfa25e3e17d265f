"""Edges where a user meets fastxent first: overlapping `out`, uint64 labels near
ignore_index, byte order, option ranges, foreign array types, probabilities passed as logits,
and the edge shapes PyTorch accepts for softmax, log_softmax and logsumexp."""

import warnings

import numpy as np
import pytest

import fastxent
from fastxent._core.threads import SERIAL_BELOW
from helpers import raises_untouched

SENTINEL = -123.5


# ---- out= overlapping the input: decided by shape, strides and dtype, not start address ----

@pytest.mark.parametrize("n_threads", [1, 2])
def test_logsumexp_out_at_the_inputs_start_address_is_rejected(n_threads):
    """`out=a.reshape(-1)[:N]` starts where `a` does but is not `a`: it used to be taken for
    in place, and two threads then overwrote rows before reading them (~14 % wrong)."""
    n = SERIAL_BELOW // 8 + 100
    a = np.random.default_rng(0).normal(size=(n, 8))
    before = a.copy()
    with pytest.raises(ValueError, match="overlaps the input"):
        fastxent.logsumexp(a, out=a.reshape(-1)[:n], n_threads=n_threads)
    np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "cross_entropy_grad",
                                  "binary_cross_entropy_grad"])
def test_in_place_still_works_for_the_same_buffer(name):
    """out=x (same memory, shape, strides, dtype) is in place and equals out of place."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(SERIAL_BELOW // 4 + 3, 4))
    args = {"softmax": (), "log_softmax": (),
            "cross_entropy_grad": (rng.integers(0, 4, x.shape[0]),),
            "binary_cross_entropy_grad": (rng.uniform(size=x.shape),)}[name]
    fn = getattr(fastxent, name)
    expected = fn(x, *args)
    got = fn(x, *args, out=x, n_threads=2)
    assert got is x
    np.testing.assert_array_equal(x, expected)


def test_same_buffer_needs_shape_and_strides():
    from fastxent._api.validation import same_buffer
    a = np.zeros((4, 3))
    assert same_buffer(a, a[:])
    assert not same_buffer(a, a.reshape(-1))
    assert not same_buffer(a.reshape(-1)[:4], a[:, 0])           # same start, other strides
    assert not same_buffer(a, a.view(np.int64))


def test_out_matrix_is_rejected_before_writing():
    x = np.linspace(-1, 1, 12).reshape(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        out = np.matrix(np.full((4, 3), SENTINEL))
    raises_untouched(fastxent.cross_entropy_grad, (x, np.array([0, 1, 2, 0])), {"out": out},
                     TypeError, ["numpy.matrix"], buffers=[x, out])
    raises_untouched(fastxent.softmax, (x,), {"out": out}, TypeError, ["numpy.matrix"],
                     buffers=[x, out])


# ---- uint64 labels and ignore_index ---------------------------------------------------------

def test_uint64_label_beyond_int64_is_not_taken_for_ignore_index():
    """2**64-1 used to be clamped to 2**63-1 and then matched ignore_index=2**63-1."""
    x = np.zeros((3, 4))
    labels = np.array([1, 2, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"target\[2\] = 18446744073709551615"):
        fastxent.cross_entropy(x, labels, ignore_index=2**63 - 1)
    with pytest.raises(ValueError, match=r"target\[2\] = 18446744073709551615"):
        fastxent.evaluate(x, labels, ignore_index=2**63 - 1)
    # a label that really equals ignore_index is still ignored
    ok = np.array([1, 2, 2**63 - 1], dtype=np.uint64)
    assert fastxent.cross_entropy(x, ok, ignore_index=2**63 - 1) == pytest.approx(np.log(4))
    # and the other sentinel: ignore_index at int64's minimum
    with pytest.raises(ValueError, match=r"target\[2\]"):
        fastxent.cross_entropy(x, labels, ignore_index=-2**63)


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -2**63 - 1, np.uint64(2**64 - 1)])
def test_ignore_index_beyond_int64_is_rejected(value):
    x, labels = np.zeros((2, 3)), np.array([0, 1], dtype=np.uint64)
    with pytest.raises(ValueError, match="ignore_index must be None or an int that fits in int64"):
        fastxent.cross_entropy(x, labels, ignore_index=value)


# ---- one dtype rule: float32 in any byte order is computed in float32 -----------------------

@pytest.mark.parametrize("code", ["f4", "f8"])
def test_byte_order_does_not_change_the_computation_dtype(code):
    rng = np.random.default_rng(2)
    native = rng.normal(size=(50, 7)).astype("=" + code)
    labels = rng.integers(0, 7, 50)
    swapped = native.astype(">" + code if np.little_endian else "<" + code)
    want = fastxent.cross_entropy_loss_and_grad(native, labels)
    got = fastxent.cross_entropy_loss_and_grad(swapped, labels)
    assert got[0].dtype == want[0].dtype == native.dtype
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    assert fastxent.softmax(swapped).dtype == native.dtype
    assert fastxent.binary_cross_entropy(swapped, rng.uniform(size=swapped.shape)).dtype \
        == native.dtype


def test_big_endian_file_same_as_loaded_array(tmp_path):
    """evaluate_files and evaluate(np.load(...)) compute a big-endian float32 file alike."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(300, 5)).astype(">f4")
    labels = rng.integers(0, 5, 300)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    from_file = fastxent.evaluate_files(tmp_path / "logits.npy", tmp_path / "labels.npy",
                                        topk=(1,))
    loaded = fastxent.evaluate(np.load(tmp_path / "logits.npy"), labels, topk=(1,))
    assert from_file.loss == loaded.loss
    assert from_file.loss == fastxent.evaluate(logits.astype(np.float32), labels,
                                               topk=(1,)).loss


# ---- thread counts --------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [4, SERIAL_BELOW])
@pytest.mark.parametrize("n_threads", [2**31, -2**31, 10**20])
def test_n_threads_beyond_a_c_int_is_rejected_for_every_size(rows, n_threads):
    x = np.zeros((rows, 3))
    for fn in (fastxent.cross_entropy, fastxent.softmax):
        args = (x, np.zeros(rows, dtype=np.int64)) if fn is fastxent.cross_entropy else (x,)
        with pytest.raises(ValueError, match="n_threads=.* is out of range"):
            fn(*args, n_threads=n_threads)


# ---- foreign arrays and probabilities passed as logits --------------------------------------

def test_torch_tensor_requiring_grad_points_to_fastxent_torch():
    torch = pytest.importorskip("torch")
    t = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(TypeError, match="fastxent.torch") as info:
        fastxent.cross_entropy(t, np.array([0, 1]))
    assert "input of type torch.Tensor" in str(info.value)
    with pytest.raises(TypeError, match="target of type torch.Tensor"):
        fastxent.binary_cross_entropy(np.zeros(3), torch.zeros(3, requires_grad=True))


PROBABILITY_WARNING = "looks like probabilities"


@pytest.mark.parametrize("axis", [-1, 0])
def test_probabilities_passed_as_logits_warn(axis):
    p = np.random.default_rng(4).dirichlet(np.ones(5), size=40)
    labels = np.zeros(40, dtype=np.int64)
    if axis == 0:
        p, labels = p.T.copy(), np.zeros(40, dtype=np.int64)
    with pytest.warns(UserWarning, match=PROBABILITY_WARNING) as record:
        fastxent.cross_entropy(p, labels, axis=axis)
    assert record[0].filename == __file__               # attributed to the caller's line
    with pytest.warns(UserWarning, match=PROBABILITY_WARNING) as record:
        fastxent.evaluate(p, labels, axis=axis)         # raised two subpackages down
    assert record[0].filename == __file__


def test_logits_and_explicit_probabilities_do_not_warn():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(5), size=40)
    labels = np.zeros(40, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastxent.cross_entropy(rng.normal(size=(40, 5)), labels)
        fastxent.cross_entropy(p, labels, from_logits=False)
        fastxent.cross_entropy(p, labels, validate=False)
        fastxent.cross_entropy(np.full((40, 5), 0.2)[:, :4], labels)   # rows sum to 0.8
        fastxent.cross_entropy(np.ones((3, 1)), np.zeros(3, dtype=np.int64))  # one class
        fastxent.cross_entropy(np.array([[0.0, 1.0]]), np.array([1]))          # one-hot


# ---- edge shapes PyTorch accepts (softmax family) -------------------------------------------

def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("value", [3.0, -2.5, 0.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_d_input_is_one_class(name, value, dtype):
    torch = _torch()
    got = getattr(fastxent, name)(dtype(value))
    want = getattr(torch, name)(torch.tensor(value, dtype=getattr(torch, np.dtype(dtype).name)),
                                0)
    assert got.shape == () and got.dtype == dtype
    assert got == want.item()
    out = np.full((), SENTINEL, dtype=dtype)
    assert getattr(fastxent, name)(np.array(value, dtype=dtype), axis=0, out=out) is out
    assert out == want.item()


@pytest.mark.parametrize("axis", [1, 2, -3])
def test_zero_d_input_rejects_other_axes(axis):
    with pytest.raises(ValueError, match="0-d input"):
        fastxent.softmax(np.float64(1.0), axis=axis)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("shape, axis", [((2, 0), -1), ((0, 3), 0), ((2, 0, 3), 1), ((0,), 0)])
def test_zero_length_class_axis_matches_torch(name, shape, axis):
    torch = _torch()
    got = getattr(fastxent, name)(np.zeros(shape), axis=axis)
    want = getattr(torch, name)(torch.zeros(shape, dtype=torch.float64), axis)
    assert got.shape == tuple(want.shape)
    np.testing.assert_array_equal(got, want.numpy())


@pytest.mark.parametrize("axes", [(0, 2), (1, 2), (2, 0), (-1,), (0, 1, 2), (1,), (-2, -3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_over_a_tuple_of_axes_matches_torch(axes, dtype):
    torch = _torch()
    x = np.random.default_rng(6).normal(scale=4, size=(3, 4, 5)).astype(dtype)
    x.flags.writeable = False
    got = fastxent.logsumexp(x, axis=axes)
    want = torch.logsumexp(torch.from_numpy(x.astype(np.float64)), axes).numpy()
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=4e-7 if dtype == np.float32 else 1e-15)
    out = np.full(want.shape, SENTINEL, dtype=dtype)
    np.testing.assert_array_equal(fastxent.logsumexp(x, axis=axes, out=out), got)


@pytest.mark.parametrize("axes, exc, fragment", [((), ValueError, "names no axis"),
                                                 ((1, 1), ValueError, "more than once"),
                                                 ((0, 3), ValueError, "out of bounds"),
                                                 ((0, 1.0), TypeError, "tuple of ints")])
def test_logsumexp_bad_axes(axes, exc, fragment):
    x = np.zeros((2, 3, 4))
    with pytest.raises(exc, match=fragment):
        fastxent.logsumexp(x, axis=axes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_single_class_nan_row_is_nan_on_every_path(dtype):
    """A row of one class holding NaN: NaN loss, gradient and Hessian, on the short-row path
    (contiguous logits with labels) as on the general one (strided). The short rows' max
    skipped the NaN and the arg-max's own exp term is never formed, so it gave 0 (found by
    the property test's big-threads example)."""
    x = np.zeros((40, 1), dtype=dtype)
    x[3] = np.nan
    labels = np.zeros(40, dtype=np.int64)
    for logits, axis in ((x, -1), (np.ascontiguousarray(x.T), 0)):
        loss, grad = fastxent.cross_entropy_loss_and_grad(logits, labels, reduction="none",
                                                          axis=axis)
        _, hess = fastxent.cross_entropy_grad_hess(logits, labels, axis=axis)
        assert np.isnan(loss[3]) and np.isnan(grad.reshape(-1)[3])
        assert np.isnan(hess.reshape(-1)[3])
        assert np.all(loss[np.arange(40) != 3] == 0)
