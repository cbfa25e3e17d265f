"""NaN, +inf and -inf in logits and probabilities: what comes out."""

import numpy as np
import pytest

import fastxent
from reference import binary_cross_entropy_ref, cross_entropy_ref

inf, nan = np.inf, np.nan
DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [3, 20])
def test_nan_logit_poisons_its_row_only(dtype, n_classes):
    """A NaN logit: that row's loss and gradient are NaN, other rows are unaffected."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, n_classes)).astype(dtype)
    y = np.array([0, 1, 2, 1, 0])
    x[2, 1] = nan
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none")
    assert np.isnan(loss[2])
    assert np.all(np.isnan(grad[2]))
    keep = [0, 1, 3, 4]
    rl, rg = cross_entropy_ref(x[keep], y[keep], reduction="none")
    tol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(loss[keep], rl, rtol=tol)
    np.testing.assert_allclose(grad[keep], rg, rtol=tol, atol=tol)
    assert np.isnan(fastxent.cross_entropy(x, y))
    assert np.isnan(fastxent.cross_entropy(x, y, reduction="sum"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_logit_with_max_elsewhere(dtype):
    """A NaN that is not where the max is still poisons the row (also soft targets)."""
    x = np.array([[10.0, nan, 0.0], [nan, -5.0, 3.0]], dtype=dtype)
    for t in (np.array([0, 2]), np.full((2, 3), 1 / 3, dtype)):
        loss, grad = fastxent.cross_entropy_loss_and_grad(x, t, reduction="none")
        assert np.all(np.isnan(loss))
        assert np.all(np.isnan(grad))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", ["labels", "soft"])
def test_all_minus_inf_row_is_nan(dtype, target):
    """A row whose logits are all -inf (C > 1) gives NaN loss and NaN gradient."""
    x = np.array([[-inf, -inf, -inf], [1.0, 2.0, 3.0]], dtype=dtype)
    t = np.array([1, 2]) if target == "labels" else np.array([[0.2, 0.3, 0.5]] * 2, dtype)
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, t, reduction="none")
    assert np.isnan(loss[0])
    assert np.all(np.isnan(grad[0]))
    assert np.isfinite(loss[1]) and np.all(np.isfinite(grad[1]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_plus_inf_at_true_class(dtype):
    """A single +inf logit at the true class: loss 0, gradient 0."""
    x = np.array([[inf, 0.0, 5.0], [-3.0, inf, 1.0]], dtype=dtype)
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, np.array([0, 1]), reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 0.0])
    np.testing.assert_array_equal(grad, np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_plus_inf_at_other_class(dtype):
    """A single +inf logit at another class: loss +inf; gradient is the limit
    softmax -> one-hot(inf class), i.e. +1 there and -1 at the label."""
    x = np.array([[0.0, inf, 1.0]], dtype=dtype)
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, np.array([0]), reduction="none")
    assert loss[0] == inf
    np.testing.assert_array_equal(grad, [[-1.0, 1.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [{}, {"weight": [2.0, 0.5, 1.0, 3.0]},
                                  {"sample_weight": [2.0, 0.5]}],
                         ids=["plain", "weight", "sample_weight"])
def test_masked_class(dtype, opts):
    """A -inf (masked) class that is not the label: the loss equals the reference with that
    class removed, and its gradient is 0."""
    x = np.array([[1.0, -inf, 0.5, 2.0], [-inf, 3.0, -1.0, 0.0]], dtype=dtype)
    y = np.array([0, 2])
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none", **opts)
    tol = 1e-6 if dtype == "float32" else 1e-14
    w = np.asarray(opts.get("weight", np.ones(4)))
    sw = np.asarray(opts.get("sample_weight", np.ones(2)))
    for r, masked in ((0, 1), (1, 0)):
        keep = [c for c in range(4) if c != masked]
        yk = keep.index(y[r])
        rl, rg = cross_entropy_ref(x[r:r + 1, keep], np.array([yk]), reduction="none",
                                   weight=w[keep])
        np.testing.assert_allclose(loss[r], sw[r] * rl[0], rtol=tol)
        np.testing.assert_allclose(grad[r, keep], sw[r] * rg[0], rtol=tol, atol=tol)
        assert grad[r, masked] == 0.0
    mean = fastxent.cross_entropy(x, y, **opts)
    assert np.isfinite(mean)


def test_masked_class_with_smoothing_is_inf():
    """Label smoothing puts mass on a masked (-inf) class: the loss is +inf (as PyTorch)."""
    x = np.array([[1.0, -inf, 0.5]])
    assert fastxent.cross_entropy(x, np.array([0]), label_smoothing=0.1) == inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_infinite_logits(dtype):
    """Binary z = +-inf gives the limit: loss 0 when the label agrees, +inf when it does not;
    the gradient is sigmoid(z) - y, i.e. 0 or +-1."""
    z = np.array([inf, -inf, inf, -inf], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(z, y, reduction="none")
    np.testing.assert_array_equal(loss, [0.0, 0.0, inf, inf])
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_nan_propagates(dtype):
    """A NaN logit or probability: NaN loss and gradient at that element only."""
    z = np.array([0.5, nan, -1.0], dtype=dtype)
    y = np.array([1.0, 1.0, 0.0], dtype=dtype)
    for from_logits in (True, False):
        x = z if from_logits else np.array([0.3, nan, 0.6], dtype=dtype)
        loss, grad = fastxent.binary_cross_entropy_loss_and_grad(
            x, y, reduction="none", from_logits=from_logits, validate=False)
        assert np.isnan(loss[1]) and np.isnan(grad[1])
        rl, rg = binary_cross_entropy_ref(x[[0, 2]], y[[0, 2]], reduction="none",
                                          from_logits=from_logits)
        np.testing.assert_allclose(loss[[0, 2]], rl, rtol=1e-6)
        np.testing.assert_allclose(grad[[0, 2]], rg, rtol=1e-6)
        assert np.isnan(fastxent.binary_cross_entropy(x, y, from_logits=from_logits,
                                                      validate=False))


def test_nan_probability_without_validation_propagates():
    """validate=False and a NaN probability at the label: that row's loss is NaN."""
    p = np.array([[nan, 0.5, 0.5], [0.2, 0.3, 0.5]])
    loss = fastxent.cross_entropy(p, np.array([0, 1]), from_logits=False, validate=False,
                                  reduction="none")
    assert np.isnan(loss[0])
    assert loss[1] == pytest.approx(-np.log(0.3), rel=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_probabilities_at_bounds_are_clipped(dtype):
    """p = 0 at the label gives -log(eps); p = 1 gives -log(1 - eps) (tiny, not 0)."""
    eps = float(np.finfo(dtype).eps)
    p = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    loss = fastxent.cross_entropy(p, np.array([0, 0]), from_logits=False, reduction="none")
    np.testing.assert_allclose(loss, [-np.log(eps), -np.log1p(-eps)], rtol=1e-6)
    bl = fastxent.binary_cross_entropy(np.array([0.0, 1.0], dtype), np.array([1.0, 0.0], dtype),
                                       from_logits=False, reduction="none")
    np.testing.assert_allclose(bl, [-np.log(eps), -np.log(eps)], rtol=1e-6)
