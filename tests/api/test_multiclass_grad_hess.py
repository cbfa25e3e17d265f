"""cross_entropy_grad_hess: the gradient as cross_entropy_grad gives it, and the Hessian's
diagonal against the float64 reference, finite differences, scikit-learn and PyTorch."""

import zlib

import numpy as np
import pytest

import fastxent
from fastxent._core.threads import SERIAL_BELOW
from helpers import REDUCTIONS, assert_close, multiclass_case, raises_untouched
from reference import cross_entropy_hessian_ref, fd_grad

# (name, shape, axis): short rows (with labels: the path vectorised across rows), long rows, a
# strided class axis and PyTorch's (N, C, d) layout
LAYOUTS = [("short", (13, 5), -1), ("long", (9, 70), -1), ("strided", (6, 11), 0),
           ("nchw", (3, 4, 5), 1)]
OPTIONS = {
    "plain": {},
    "weight": {"weight": "w"},
    "sample_weight": {"sample_weight": "s"},
    "ignore": {"ignore_index": -100},
    "smoothing": {"label_smoothing": 0.2},
    "all": {"weight": "w", "sample_weight": "s", "ignore_index": -100, "label_smoothing": 0.1},
    "soft": {"soft": True},
    "soft_all": {"soft": True, "weight": "w", "sample_weight": "s", "label_smoothing": 0.1},
}


def _case(rng, shape, axis, dtype, from_logits, option):
    return multiclass_case(rng, shape, axis, dtype, from_logits, OPTIONS[option])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("layout", [name for name, _, _ in LAYOUTS])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_against_reference(dtype, from_logits, layout, option, reduction):
    _, shape, axis = next(item for item in LAYOUTS if item[0] == layout)
    rng = np.random.default_rng(zlib.crc32(repr((dtype, from_logits, layout, option)).encode()))
    x, target, kw = _case(rng, shape, axis, dtype, from_logits, option)
    kw.update(from_logits=from_logits, reduction=reduction, axis=axis)
    grad, hess = fastxent.cross_entropy_grad_hess(x, target, **kw)
    assert grad.dtype == hess.dtype == np.dtype(dtype)
    assert grad.shape == hess.shape == x.shape
    # the gradient is the one cross_entropy_grad computes, bit for bit, on every row path
    np.testing.assert_array_equal(grad, fastxent.cross_entropy_grad(x, target, **kw))
    assert_close(hess, cross_entropy_hessian_ref(x, target, **kw), np.dtype(dtype), what="hess")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_give_identical_results(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, (SERIAL_BELOW // 10 + 7, 10)).astype(dtype)
    y = rng.integers(0, 10, x.shape[0])
    one = fastxent.cross_entropy_grad_hess(x, y, label_smoothing=0.1, n_threads=1)
    two = fastxent.cross_entropy_grad_hess(x, y, label_smoothing=0.1, n_threads=2)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("from_logits", [True, False])
def test_hessian_diagonal_is_the_derivative_of_the_gradient(from_logits):
    """Finite differences of fastxent's own gradient: d grad_c / d x_c (float64)."""
    rng = np.random.default_rng(4)
    x, target, kw = _case(rng, (3, 6), -1, "float64", from_logits, "all")
    kw["reduction"] = "sum"
    kw["from_logits"] = from_logits
    _, hess = fastxent.cross_entropy_grad_hess(x, target, **kw)
    numeric = np.empty_like(x)
    for index in np.ndindex(x.shape):
        def grad_at(value, index=index):
            shifted = x.copy()
            shifted[index] = value[()]
            return fastxent.cross_entropy_grad(shifted, target, **kw)[index]
        step = 1e-5 if from_logits else 1e-3 * x[index]      # probabilities stay in (0, 1)
        numeric[index] = fd_grad(grad_at, np.array(x[index]), step)
    np.testing.assert_allclose(hess, numeric, rtol=1e-7, atol=1e-9)


def test_matches_scikit_learn_half_multinomial_loss():
    sklearn_loss = pytest.importorskip("sklearn._loss.loss")
    rng = np.random.default_rng(6)
    raw = rng.normal(0, 4, (500, 7))
    y = rng.integers(0, 7, 500)
    sample_weight = rng.uniform(0, 3, 500)
    grad_ref, hess_ref = sklearn_loss.HalfMultinomialLoss(n_classes=7).gradient_hessian(
        y_true=y.astype(np.float64), raw_prediction=raw, sample_weight=sample_weight)
    grad, hess = fastxent.cross_entropy_grad_hess(raw, y, sample_weight=sample_weight,
                                                  reduction="sum")
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hess, hess_ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("option", ["plain", "all", "soft_all"])
def test_matches_torch_hessian_diagonal(option):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x, target, kw = _case(rng, (4, 5), -1, "float64", True, option)
    weight = torch.from_numpy(kw["weight"]) if "weight" in kw else None
    sample_weight = kw.get("sample_weight", np.ones(4))
    target_t = torch.from_numpy(target)

    def loss(z):
        per_row = torch.nn.functional.cross_entropy(
            z, target_t, weight=weight, ignore_index=kw.get("ignore_index", -100),
            label_smoothing=kw.get("label_smoothing", 0.0), reduction="none")
        return (per_row * torch.from_numpy(sample_weight)).sum()

    full = torch.autograd.functional.hessian(loss, torch.from_numpy(x)).numpy()
    diagonal = np.einsum("ijij->ij", full)
    _, hess = fastxent.cross_entropy_grad_hess(x, target, reduction="sum", **kw)
    np.testing.assert_allclose(hess, diagonal, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_values_and_confident_rows(dtype):
    x = np.array([[np.nan, 0.0, 1.0], [-np.inf, 0.0, 0.0], [60.0, 0.0, 0.0]], dtype=dtype)
    _, hess = fastxent.cross_entropy_grad_hess(x, np.array([0, 1, 0]), reduction="sum")
    assert np.all(np.isnan(hess[0]))
    np.testing.assert_array_equal(hess[1], np.array([0.0, 0.25, 0.25], dtype=dtype))
    # p = 1 - 2e^-60 at the arg-max: its Hessian p (1 - p) ~ 2e^-60 is kept, not rounded to 0
    expected = 2 * np.exp(-60.0)
    np.testing.assert_allclose(hess[2], [expected, np.exp(-60.0), np.exp(-60.0)], rtol=1e-5)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_in_place(dtype, from_logits):
    rng = np.random.default_rng(10)
    for _, shape, axis in LAYOUTS:
        x, target, kw = _case(rng, shape, axis, dtype, from_logits, "all")
        kw.update(axis=axis, from_logits=from_logits)
        grad_ref, hess_ref = fastxent.cross_entropy_grad_hess(x, target, **kw)
        buffer = x.copy()
        grad, hess = fastxent.cross_entropy_grad_hess(buffer, target, hess_out=buffer, **kw)
        assert hess is buffer
        np.testing.assert_array_equal(grad, grad_ref)
        np.testing.assert_array_equal(hess, hess_ref)
        buffer = x.copy()
        grad, hess = fastxent.cross_entropy_grad_hess(buffer, target, out=buffer, **kw)
        assert grad is buffer
        np.testing.assert_array_equal(grad, grad_ref)
        np.testing.assert_array_equal(hess, hess_ref)


def test_bad_hess_out_is_refused_before_anything_is_written():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, 6)
    out = np.full_like(x, 3.0)
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    func = fastxent.cross_entropy_grad_hess
    cases = [
        ({"hess_out": np.empty((6, 3))}, ValueError, ["hess_out must have shape (6, 4)"]),
        ({"hess_out": np.empty((6, 4), np.float32)}, ValueError, ["hess_out", "float64"]),
        ({"hess_out": np.empty((4, 6)).T}, ValueError, ["hess_out must be C-contiguous"]),
        ({"hess_out": read_only}, ValueError, ["hess_out must be writeable"]),
        ({"hess_out": x[:, :2]}, ValueError, ["hess_out"]),
        ({"out": out, "hess_out": out}, ValueError, ["hess_out must not overlap", "out"]),
        ({"out": x, "hess_out": x}, ValueError, ["hess_out must not overlap", "out"]),
    ]
    for kwargs, exc, fragments in cases:
        raises_untouched(func, (x, y), kwargs, exc, fragments, buffers=(x, out))
