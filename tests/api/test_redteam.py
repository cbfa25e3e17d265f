"""A red-team pass over the public entry points ("look for the same class of bug
elsewhere"): options taken by truthiness, ignore_index values that round onto real targets,
byte order deciding a label rule, Dask's dtype and error messages, and the PyTorch adapter
accepting what PyTorch refuses. Each test asserts the right behaviour (PyTorch's, an
independent float64 reference, or a clear error)."""

import numpy as np
import pytest

import fastxent
from helpers import raises_untouched


def _bce_reference(x, y, keep=None):
    """Mean binary cross-entropy from logits in float64 over the kept elements."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    losses = np.logaddexp(0.0, x) - y * x
    keep = np.ones(x.shape, bool) if keep is None else keep
    return losses[keep].sum() / keep.sum()


# ---- flags taken by truthiness: from_logits="False" meant logits -----------------------------

BCE_FUNCTIONS = ["binary_cross_entropy", "binary_cross_entropy_grad",
                 "binary_cross_entropy_loss_and_grad"]


@pytest.mark.parametrize("name", BCE_FUNCTIONS)
@pytest.mark.parametrize("option, value", [("from_logits", "False"), ("from_logits", None),
                                           ("from_logits", 0), ("validate", "no"),
                                           ("validate", [])])
def test_binary_flags_must_be_bools(name, option, value):
    """``from_logits="False"`` was ``bool("False")``: probabilities silently taken as logits
    (and ``None`` as probabilities); a flag must be a bool or ``np.bool_``."""
    x, y = np.array([0.2, 0.7]), np.array([0.0, 1.0])
    out = np.full(2, -7.0)
    kwargs = {option: value} if name == "binary_cross_entropy" else {option: value, "out": out}
    with pytest.raises(TypeError, match=f"{option} must be a bool"):
        getattr(fastxent, name)(x, y, **kwargs)
    np.testing.assert_array_equal(out, -7.0)


@pytest.mark.parametrize("flag", [True, np.True_, False, np.False_])
def test_binary_flags_take_numpy_bools(flag):
    p, y = np.array([0.2, 0.7]), np.array([0.0, 1.0])
    logits = np.log(p / (1 - p))
    expected = _bce_reference(logits, y)
    got = fastxent.binary_cross_entropy(logits if flag else p, y, from_logits=flag,
                                        validate=flag)
    assert got == pytest.approx(expected, rel=1e-14)


@pytest.mark.filterwarnings("ignore:fastxent. the input looks like probabilities")
@pytest.mark.parametrize("name", ["cross_entropy", "evaluate"])
def test_multiclass_flags_must_be_bools(name):
    probabilities = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    with pytest.raises(TypeError, match="from_logits must be a bool"):
        getattr(fastxent, name)(probabilities, np.array([2, 0]), from_logits="False")


# ---- binary ignore_index rounded onto real targets in float32 --------------------------------

@pytest.mark.parametrize("ignore_index", [1.00000001, 1e-50, -1e-50, 0.1])
def test_binary_float32_ignore_index_must_be_exact_in_float32(ignore_index):
    """float32 targets were compared with ignore_index rounded to float32: 1.00000001 ignored
    every target 1, 1e-50 every target 0 (a loss of 0.584 instead of 0.442, silently)."""
    x = np.array([0.5, -1.0, 2.0, 0.3], np.float32)
    y = np.array([1.0, 0.0, 1.0, 0.0])
    out = np.full(4, -7.0, np.float32)
    raises_untouched(fastxent.binary_cross_entropy_loss_and_grad, (x, y),
                     {"ignore_index": ignore_index, "out": out}, ValueError,
                     ["ignore_index", "not exactly representable in float32"], [out])


def test_binary_ignore_index_exact_in_float32_still_ignores():
    x = np.array([0.5, -1.0, 2.0, 0.3], np.float32)
    y = np.array([1.0, 0.0, -1.0, 0.0])
    keep = y != -1
    for ignore_index in (-1, -1.0, np.float32(-1), np.int8(-1)):
        got = fastxent.binary_cross_entropy(x, y, ignore_index=ignore_index)
        assert got == pytest.approx(_bce_reference(x, y, keep), rel=1e-6)
    # in float64 the same value is exact, and matches nothing
    got = fastxent.binary_cross_entropy(x.astype(np.float64), np.abs(y),
                                        ignore_index=1.00000001)
    assert got == pytest.approx(_bce_reference(x, np.abs(y)), rel=1e-14)


def test_binary_ignore_index_beyond_float_range_is_a_clear_error():
    """``ignore_index=10**400`` raised a bare ``OverflowError: int too large to convert``."""
    with pytest.raises(ValueError, match="ignore_index"):
        fastxent.binary_cross_entropy(np.zeros(2), np.zeros(2), ignore_index=10**400)


# ---- eps: a bool is not a number -------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda eps: fastxent.binary_cross_entropy(np.array([0.5]), np.array([1.0]),
                                              from_logits=False, eps=eps),
    lambda eps: fastxent.cross_entropy(np.array([[0.5, 0.5]]), np.array([1]),
                                       from_logits=False, eps=eps),
    lambda eps: fastxent.Evaluator(eps=eps),
])
@pytest.mark.parametrize("eps", [False, np.False_])
def test_eps_rejects_bools(call, eps):
    """``eps=False`` was taken as 0 (``label_smoothing`` already refused bools)."""
    with pytest.raises(ValueError, match="eps must be a number"):
        call(eps)


# ---- byte order deciding the uint64 label rule -----------------------------------------------

@pytest.mark.parametrize("name", ["cross_entropy", "evaluate"])
def test_big_endian_uint64_label_never_matches_ignore_index(name):
    x = np.zeros((3, 4))
    labels = np.array([0, 1, 2**64 - 1], dtype=">u8")
    with pytest.raises(ValueError, match="18446744073709551615 is not a class index"):
        getattr(fastxent, name)(x, labels, ignore_index=-1)


# ---- fastxent.dask ---------------------------------------------------------------------------

@pytest.fixture
def fxd():
    pytest.importorskip("dask.array")
    import fastxent.dask
    return fastxent.dask


@pytest.mark.parametrize("dtype", ["<f4", ">f4", ">f8", "<f2", "<i4"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dask_result_dtype_is_fastxents(fxd, dtype, reduction):
    """The lazy dtype said float64 for big-endian float32 while the blocks computed float32
    (and ``mean`` came back float64, unlike ``fastxent.cross_entropy``)."""
    import dask.array as da
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(dtype)
    t = np.arange(10) % 3
    lazy = fxd.cross_entropy(da.from_array(x, chunks=(4, 3)), t, reduction=reduction)
    expected = np.asarray(fastxent.cross_entropy(x, t, reduction=reduction))
    computed = np.asarray(lazy.compute(scheduler="sync"))
    assert lazy.dtype == expected.dtype == computed.dtype
    np.testing.assert_allclose(computed, expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["cross_entropy", "evaluate"])
@pytest.mark.parametrize("which", ["input", "target", "sample_weight"])
def test_dask_torch_tensor_that_requires_grad_gets_a_clear_error(fxd, name, which):
    torch = pytest.importorskip("torch")
    args = {"input": np.zeros((4, 3)), "target": np.zeros(4, np.int64),
            "sample_weight": np.ones(4)}
    args[which] = torch.tensor(args[which], dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match=f"{which} of type torch.Tensor.*fastxent.torch"):
        getattr(fxd, name)(**args)


@pytest.mark.parametrize("which", ["target", "sample_weight"])
def test_dask_unknown_chunks_of_target_or_weight_are_named(fxd, which):
    """A target or sample weight with unknown chunk sizes was reported as a shape mismatch
    ("must have shape (40,), got (nan,)")."""
    import dask.array as da
    x = da.from_array(np.zeros((40, 3)), chunks=(10, 3))
    t = da.from_array(np.arange(40) % 3, chunks=10)
    s = da.from_array(np.ones(40), chunks=10)
    unknown = {"target": t, "sample_weight": s}[which]
    unknown = unknown[unknown >= 0]          # same values, unknown chunk sizes
    kwargs = {"target": t, "sample_weight": s, which: unknown}
    for fn in (fxd.cross_entropy, fxd.evaluate):
        with pytest.raises(ValueError, match=f"{which} has unknown chunk sizes"):
            fn(x, **kwargs)


def test_dask_empty_class_axis_names_the_users_shape(fxd):
    """The error named the zero-row probe's shape, "input of shape (0, 0)"."""
    for fn in (fxd.cross_entropy, fxd.evaluate):
        with pytest.raises(ValueError, match=r"input of shape \(4, 0\) has no classes"):
            fn(np.zeros((4, 0)), np.zeros(4, np.int64))


# ---- fastxent.torch: what PyTorch refuses must not be computed -------------------------------

@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("ignore_index", [True, 1.0, 1.5, np.float64(1.0), None])
def test_torch_cross_entropy_ignore_index_must_be_an_int(torch, ignore_index):
    import torch.nn.functional as F

    import fastxent.torch as fxt
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 1])
    with pytest.raises(TypeError, match="ignore_index"):
        F.cross_entropy(x, t, ignore_index=ignore_index)
    with pytest.raises(TypeError, match="ignore_index"):
        fxt.cross_entropy(x, t, ignore_index=ignore_index)


@pytest.mark.parametrize("ignore_index", [0, 2, 7])
def test_torch_probability_targets_refuse_a_class_ignore_index(torch, ignore_index):
    import torch.nn.functional as F

    import fastxent.torch as fxt
    x = torch.randn(4, 3, dtype=torch.float64)
    p = torch.softmax(torch.randn(4, 3, dtype=torch.float64), 1)
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        F.cross_entropy(x, p, ignore_index=ignore_index)
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        fxt.cross_entropy(x, p, ignore_index=ignore_index)
