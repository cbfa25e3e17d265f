"""binary_cross_entropy_grad_hess: the gradient as binary_cross_entropy_grad gives it, and the
Hessian's diagonal against the float64 reference, finite differences, scikit-learn and PyTorch."""

import zlib

import numpy as np
import pytest

import fastxent
from fastxent._core.threads import SERIAL_BELOW
from helpers import REDUCTIONS, assert_close, raises_untouched
from reference import binary_hessian_ref, fd_grad

SHAPE = (9, 70)                 # rows of 70 >= 64: per-row and per-column weights read in place
BIG_SHAPE = (SERIAL_BELOW // 70 + 5, 70)


def _options(rng, shape):
    """Every option of the binary family, alone and together."""
    rows, cols = shape
    return {
        "plain": {},
        "weight_full": {"weight": rng.uniform(0.0, 2.0, shape)},
        "weight_col": {"weight": rng.uniform(0.0, 2.0, cols)},
        "weight_row": {"weight": rng.uniform(0.0, 2.0, (rows, 1))},
        "weight_scalar": {"weight": 1.5},
        "pos_weight": {"pos_weight": rng.uniform(0.5, 3.0, cols)},
        "ignore": {"ignore_index": -1.0},
        "smoothing": {"label_smoothing": 0.2},
        "all": {"weight": rng.uniform(0.0, 2.0, (rows, 1)), "pos_weight": 2.5,
                "ignore_index": -1.0, "label_smoothing": 0.1},
    }


def _data(rng, shape, dtype, from_logits):
    if from_logits:
        x = rng.normal(0.0, 4.0, shape).astype(dtype)
    else:
        x = rng.uniform(0.01, 0.99, shape).astype(dtype)
    y = rng.uniform(0.0, 1.0, shape)
    y[:, ::3] = np.round(y[:, ::3])
    y[1, :5] = -1.0                               # ignored where the option says so
    return x, y.astype(dtype)


def _without_ignored(y, kw):
    """Targets -1 are valid only when ignore_index says so; elsewhere they become 0."""
    return y if "ignore_index" in kw else np.where(y < 0, 0, y).astype(y.dtype)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(_options(np.random.default_rng(0), SHAPE)))
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_against_reference(dtype, from_logits, option, reduction, n_threads):
    rng = np.random.default_rng(zlib.crc32(repr((dtype, from_logits, option)).encode()))
    shape = BIG_SHAPE if n_threads == 2 else SHAPE
    kw = dict(_options(rng, shape)[option], from_logits=from_logits, reduction=reduction)
    x, y = _data(rng, shape, dtype, from_logits)
    y = _without_ignored(y, kw)
    grad, hess = fastxent.binary_cross_entropy_grad_hess(x, y, n_threads=n_threads, **kw)
    assert grad.dtype == hess.dtype == np.dtype(dtype)
    assert grad.shape == hess.shape == x.shape
    # the gradient is the one binary_cross_entropy_grad computes, bit for bit
    np.testing.assert_array_equal(
        grad, fastxent.binary_cross_entropy_grad(x, y, n_threads=n_threads, **kw))
    expected = binary_hessian_ref(x, y, **kw)
    assert_close(hess, expected, np.dtype(dtype), what="hess")
    if "ignore_index" in kw:
        assert np.all(hess[y == -1.0] == 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_give_identical_results(dtype):
    rng = np.random.default_rng(3)
    x, y = _data(rng, BIG_SHAPE, dtype, True)
    y = np.clip(y, 0, 1)
    one = fastxent.binary_cross_entropy_grad_hess(x, y, pos_weight=2.0, n_threads=1)
    two = fastxent.binary_cross_entropy_grad_hess(x, y, pos_weight=2.0, n_threads=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("from_logits", [True, False])
def test_hessian_is_the_derivative_of_the_gradient(from_logits):
    """Finite differences of fastxent's own gradient (float64): each element's gradient
    depends on that element only, so the derivative of the summed gradient is the diagonal."""
    rng = np.random.default_rng(5)
    shape = (3, 5)
    x = rng.normal(0, 2, shape) if from_logits else rng.uniform(0.05, 0.95, shape)
    y = rng.uniform(0, 1, shape)
    kw = {"from_logits": from_logits, "pos_weight": 1.7, "weight": rng.uniform(0.5, 2, 5),
          "label_smoothing": 0.1, "reduction": "sum"}
    _, hess = fastxent.binary_cross_entropy_grad_hess(x, y, **kw)
    numeric = fd_grad(lambda z: fastxent.binary_cross_entropy_grad(z, y, **kw).sum(), x, 1e-4)
    np.testing.assert_allclose(hess, numeric, rtol=1e-8, atol=1e-10)


def test_matches_scikit_learn_half_binomial_loss():
    sklearn_loss = pytest.importorskip("sklearn._loss.loss")
    rng = np.random.default_rng(7)
    raw = rng.normal(0, 5, 1000)
    y = rng.integers(0, 2, 1000).astype(np.float64)
    sample_weight = rng.uniform(0, 3, 1000)
    grad_ref, hess_ref = sklearn_loss.HalfBinomialLoss().gradient_hessian(
        y_true=y, raw_prediction=raw, sample_weight=sample_weight)
    grad, hess = fastxent.binary_cross_entropy_grad_hess(raw, y, weight=sample_weight,
                                                         reduction="sum")
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(hess, hess_ref, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_matches_torch_hessian(from_logits, reduction):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(11)
    shape = (4, 6)
    x = rng.normal(0, 2, shape) if from_logits else rng.uniform(0.05, 0.95, shape)
    y = rng.uniform(0, 1, shape)
    w = rng.uniform(0.5, 2.0, shape)
    pos_weight = rng.uniform(0.5, 3.0, shape[-1]) if from_logits else None
    yt, wt = torch.from_numpy(y), torch.from_numpy(w)

    def loss(z):
        if from_logits:
            return functional.binary_cross_entropy_with_logits(
                z, yt, weight=wt, pos_weight=torch.from_numpy(pos_weight), reduction=reduction)
        return functional.binary_cross_entropy(z, yt, weight=wt, reduction=reduction)

    full = torch.autograd.functional.hessian(loss, torch.from_numpy(x)).numpy()
    full = full.reshape(x.size, x.size)
    assert np.count_nonzero(full - np.diag(np.diag(full))) == 0    # elementwise: diagonal
    _, hess = fastxent.binary_cross_entropy_grad_hess(
        x, y, from_logits=from_logits, weight=w, pos_weight=pos_weight, reduction=reduction,
        eps=1e-12)
    # PyTorch differentiates its gradient w (p - y) / (p (1 - p)) once more, which rounds more
    # than the direct form (3e-11 relative seen); the reference test holds fastxent to 1e-12
    np.testing.assert_allclose(hess.reshape(-1), np.diag(full),
                               rtol=1e-12 if from_logits else 1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values(dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, 1e30, -1e30], dtype=dtype)
    y = np.array([1.0, 0.0, 1.0, 0.5, 0.0, 1.0], dtype=dtype)
    grad, hess = fastxent.binary_cross_entropy_grad_hess(x, y, reduction="sum")
    np.testing.assert_array_equal(hess[[0, 1, 4, 5]], 0.0)
    assert np.isnan(hess[2]) and np.isnan(grad[2])
    assert hess[3] == dtype_type(dtype)(0.25)
    p = np.array([0.0, 1.0, 0.5], dtype=dtype)       # clipped to [eps, 1 - eps]: finite
    _, hess_p = fastxent.binary_cross_entropy_grad_hess(
        p, np.array([1.0, 0.0, 1.0], dtype=dtype), from_logits=False, reduction="sum")
    assert np.all(np.isfinite(hess_p)) and np.all(hess_p > 0)


def dtype_type(dtype):
    return np.dtype(dtype).type


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_in_place(dtype):
    rng = np.random.default_rng(13)
    x, y = _data(rng, SHAPE, dtype, True)
    y = np.clip(y, 0, 1)
    grad_ref, hess_ref = fastxent.binary_cross_entropy_grad_hess(x, y)
    into_input = x.copy()
    grad, hess = fastxent.binary_cross_entropy_grad_hess(into_input, y, hess_out=into_input)
    assert hess is into_input
    np.testing.assert_array_equal(hess, hess_ref)
    np.testing.assert_array_equal(grad, grad_ref)
    into_input = x.copy()
    out = np.empty_like(x)
    grad, hess = fastxent.binary_cross_entropy_grad_hess(into_input, y, out=into_input,
                                                         hess_out=out)
    assert grad is into_input and hess is out
    np.testing.assert_array_equal(grad, grad_ref)
    np.testing.assert_array_equal(hess, hess_ref)


def test_bad_hess_out_is_refused_before_anything_is_written():
    rng = np.random.default_rng(17)
    x, y = _data(rng, SHAPE, "float64", True)
    y = np.clip(y, 0, 1)
    func = fastxent.binary_cross_entropy_grad_hess
    out = np.full_like(x, 7.0)
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    cases = [
        ({"hess_out": np.empty((9, 69))}, ValueError, ["hess_out must have shape (9, 70)"]),
        ({"hess_out": np.empty(SHAPE, np.float32)}, ValueError, ["hess_out", "dtype float64"]),
        ({"hess_out": np.empty((70, 9)).T}, ValueError, ["hess_out must be C-contiguous"]),
        ({"hess_out": read_only}, ValueError, ["hess_out must be writeable"]),
        ({"hess_out": [0.0] * x.size}, TypeError, ["hess_out must be a numpy.ndarray"]),
        ({"hess_out": y}, ValueError, ["hess_out must not overlap", "target"]),
        ({"out": out, "hess_out": out}, ValueError, ["hess_out must not overlap", "out"]),
        ({"out": x, "hess_out": x}, ValueError, ["hess_out must not overlap", "out"]),
    ]
    for kwargs, exc, fragments in cases:
        raises_untouched(func, (x, y), kwargs, exc, fragments, buffers=(x, y, out))


def test_int_input_computes_in_float64():
    grad, hess = fastxent.binary_cross_entropy_grad_hess(np.array([0, 1, 2]),
                                                         np.array([0, 1, 1]), reduction="sum")
    assert grad.dtype == hess.dtype == np.float64
    s = 1.0 / (1.0 + np.exp(-np.array([0.0, 1.0, 2.0])))
    np.testing.assert_allclose(hess, s * (1 - s), rtol=1e-14)


def test_worked_value_of_the_semantics_page():
    """docs/semantics.md: logits [0, 2], targets [1, 0], sum."""
    grad, hess = fastxent.binary_cross_entropy_grad_hess(np.array([0.0, 2.0]),
                                                         np.array([1.0, 0.0]), reduction="sum")
    exact_hess = [0.25, 0.10499358540350652]        # e^-2 / (1 + e^-2)^2, by mpmath
    np.testing.assert_array_max_ulp(hess, np.array(exact_hess), maxulp=4)
    np.testing.assert_array_max_ulp(grad, np.array([-0.5, 0.8807970779778823]), maxulp=4)
