"""z-loss, logit soft-capping, focal terms and return_lse: values, gradients and Hessian
diagonals against PyTorch's autograd of the defining formulas (tests/option_reference.py) in
float64, with every classic option, both dtypes and every row path; confident rows against
mpmath; Keras's focal losses; the errors for undefined combinations."""

import zlib

import numpy as np
import pytest
from option_reference import autograd_terms, binary_terms, cross_entropy_terms, numpy_terms

import fastxent
from fastxent._core.threads import SERIAL_BELOW
from helpers import REDUCTIONS, assert_close, multiclass_case, raises_untouched
from reference import fd_grad, ulp_distance_ok

TERMS = {
    "z_loss": {"z_loss": 0.01},
    "softcap": {"softcap": 4.0},
    "focal": {"focal_gamma": 2.0},
    "focal_alpha": {"focal_gamma": 0.5, "focal_alpha": 0.25},
    "all": {"z_loss": 1e-3, "softcap": 5.0, "focal_gamma": 1.5, "focal_alpha": "per_class"},
}
CLASSIC = {
    "plain": {},
    "weight": {"weight": "w"},
    "sample_weight_ignore": {"sample_weight": "s", "ignore_index": -100},
    "smoothing_weight": {"label_smoothing": 0.1, "weight": "w"},
    "soft": {"soft": True},
    "soft_all": {"soft": True, "weight": "w", "sample_weight": "s", "label_smoothing": 0.2},
}
# (name, shape, axis): short rows (the path vectorised across rows without options), long
# rows, a strided class axis
LAYOUTS = {"short": ((13, 5), -1), "long": ((9, 70), -1), "strided": ((11, 6), 0)}


def _multiclass_case(seed, shape, axis, dtype, terms, classic, from_logits=True):
    rng = np.random.default_rng(zlib.crc32(repr(seed).encode()))
    x, target, kw = multiclass_case(rng, shape, axis, dtype, from_logits, CLASSIC[classic])
    kw.update(TERMS[terms])
    if kw.get("focal_alpha") == "per_class":
        kw["focal_alpha"] = rng.uniform(0.1, 1.0, shape[axis])
    return x, target, kw


def _as_rows(x, target, kw, axis):
    """The case with the class axis last and rows flattened, as the reference takes it."""
    n_classes = x.shape[axis]
    rows = np.moveaxis(x, axis, -1).reshape(-1, n_classes).astype(np.float64)
    if target.dtype.kind == "f":
        target = np.moveaxis(target, axis, -1).reshape(-1, n_classes).astype(np.float64)
    else:
        target = np.moveaxis(target[..., None], axis, -1).reshape(-1)
    kw = dict(kw)
    if "sample_weight" in kw:
        kw["sample_weight"] = np.moveaxis(kw["sample_weight"][..., None], axis, -1).reshape(-1)
    return rows, target, kw


def _back(array, x, axis):
    moved = np.moveaxis(x, axis, -1).shape
    return np.moveaxis(array.reshape(moved), -1, axis)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("classic", list(CLASSIC))
@pytest.mark.parametrize("terms", list(TERMS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multiclass_against_autograd(dtype, layout, terms, classic, reduction):
    pytest.importorskip("torch")
    shape, axis = LAYOUTS[layout]
    x, target, kw = _multiclass_case((layout, terms, classic), shape, axis, dtype, terms,
                                     classic)
    rows, row_target, row_kw = _as_rows(x, target, kw, axis)
    loss, grad, hess = autograd_terms(cross_entropy_terms, rows, row_target,
                                      reduction=reduction, **row_kw)
    options = dict(kw, reduction=reduction, axis=axis)
    got_loss, got_grad = fastxent.cross_entropy_loss_and_grad(x, target, **options)
    grad2, got_hess = fastxent.cross_entropy_grad_hess(x, target, **options)
    assert got_grad.dtype == got_hess.dtype == np.dtype(dtype)
    if reduction == "none":
        loss = loss.reshape(got_loss.shape if axis == -1 else got_loss.T.shape)
        loss = loss if axis == -1 else loss.T
    assert_close(got_loss, loss, dtype, what="loss")
    assert_close(got_grad, _back(grad, x, axis), dtype, what="grad")
    assert_close(got_hess, _back(hess, x, axis), dtype, what="hess")
    np.testing.assert_array_equal(grad2, got_grad)    # one gradient, whatever else is asked
    assert_close(fastxent.cross_entropy(x, target, **options), got_loss, dtype, rtol=0)


@pytest.mark.parametrize("classic", ["plain", "weight", "smoothing_weight", "soft_all"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multiclass_focal_probabilities(dtype, classic):
    pytest.importorskip("torch")
    x, target, kw = _multiclass_case(("prob", classic), (10, 6), -1, dtype, "focal_alpha",
                                     classic, from_logits=False)
    eps = float(np.finfo(dtype).eps)
    loss, grad, hess = autograd_terms(cross_entropy_terms, x, target, from_logits=False,
                                      eps=eps, **kw)
    got_loss, got_grad = fastxent.cross_entropy_loss_and_grad(x, target, from_logits=False,
                                                              **kw)
    _, got_hess = fastxent.cross_entropy_grad_hess(x, target, from_logits=False, **kw)
    assert_close(got_loss, loss, dtype)
    assert_close(got_grad, grad, dtype)
    assert_close(got_hess, hess, dtype)


def test_multiclass_gradient_is_finite_differences():
    """Without PyTorch too: the gradient is the derivative of the loss fastxent computes."""
    x, target, kw = _multiclass_case("fd", (4, 5), -1, "float64", "all", "smoothing_weight")
    grad = fastxent.cross_entropy_grad(x, target, reduction="sum", **kw)
    expected = fd_grad(lambda z: float(fastxent.cross_entropy(z, target, reduction="sum",
                                                              **kw)), x, 1e-4)
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fastxent.cross_entropy(x, target, **kw),
                               numpy_terms(cross_entropy_terms, x, target, **kw), rtol=1e-13)


BINARY_TERMS = {
    "softcap": {"softcap": 3.0},
    "focal": {"focal_gamma": 2.0},
    "focal_alpha": {"focal_gamma": 2.0, "focal_alpha": 0.25},
    "focal_small_gamma": {"focal_gamma": 0.5, "focal_alpha": 0.75},
    "all": {"softcap": 2.5, "focal_gamma": 1.3, "focal_alpha": 0.4},
}
BINARY_CLASSIC = {
    "plain": {},
    "weight": {"weight": "w"},
    "pos_weight_smoothing": {"pos_weight": "pw", "label_smoothing": 0.1},
    "soft_targets": {"soft": True, "weight": "w"},
}


def _binary_case(seed, dtype, terms, classic, from_logits=True, shape=(7, 5)):
    rng = np.random.default_rng(zlib.crc32(repr(seed).encode()))
    z = rng.normal(0.0, 4.0, shape)
    x = z if from_logits else 1.0 / (1.0 + np.exp(-z / 2))
    y = rng.uniform(0, 1, shape) if CLASSIC.get(classic, {}).get("soft") or \
        BINARY_CLASSIC[classic].get("soft") else rng.integers(0, 2, shape).astype(float)
    kw = dict(BINARY_TERMS[terms])
    for key, value in BINARY_CLASSIC[classic].items():
        if value == "w":
            kw[key] = rng.uniform(0.2, 2.0, shape)
        elif value == "pw":
            kw[key] = rng.uniform(0.5, 3.0, shape[-1])
        elif key != "soft":
            kw[key] = value
    return x.astype(dtype), y.astype(dtype), kw


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("classic", list(BINARY_CLASSIC))
@pytest.mark.parametrize("from_logits, terms",
                         [(True, terms) for terms in BINARY_TERMS]
                         + [(False, terms) for terms in BINARY_TERMS       # soft-capping is
                            if "softcap" not in BINARY_TERMS[terms]])     # for logits only
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_against_autograd(dtype, from_logits, terms, classic, reduction):
    pytest.importorskip("torch")
    x, y, kw = _binary_case((from_logits, terms, classic), dtype, terms, classic, from_logits)
    eps = float(np.finfo(dtype).eps)
    loss, grad, hess = autograd_terms(binary_terms, x, y, from_logits=from_logits, eps=eps,
                                      reduction=reduction, **kw)
    options = dict(kw, from_logits=from_logits, reduction=reduction)
    got_loss, got_grad = fastxent.binary_cross_entropy_loss_and_grad(x, y, **options)
    grad2, got_hess = fastxent.binary_cross_entropy_grad_hess(x, y, **options)
    assert_close(got_loss, loss, dtype, what="loss")
    assert_close(got_grad, grad, dtype, what="grad")
    assert_close(got_hess, hess, dtype, what="hess")
    np.testing.assert_array_equal(grad2, got_grad)


def test_binary_ignore_index_with_focal_terms():
    x, y, kw = _binary_case("ignore", "float64", "all", "plain")
    y[::3, 1] = -1.0
    counted = y != -1.0
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(x, y, ignore_index=-1, **kw)
    per_element = fastxent.binary_cross_entropy(x, np.where(counted, y, 0.0),
                                                reduction="none", **kw)
    np.testing.assert_allclose(loss, per_element[counted].mean(), rtol=1e-14)
    assert np.all(grad[~counted] == 0)
    _, hess = fastxent.binary_cross_entropy_grad_hess(x, y, ignore_index=-1, **kw)
    assert np.all(hess[~counted] == 0)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_float32_within_two_ulp_of_float64(layout):
    """The option loops work in double: float32 results are float64's rounded."""
    shape, axis = LAYOUTS[layout]
    x, target, kw = _multiclass_case(("ulp", layout), shape, axis, "float32", "all",
                                     "smoothing_weight")
    options = dict(kw, axis=axis, reduction="none")
    # float64 with the per-class factors a float32 kernel reads (weight * alpha in float32)
    rounded = dict(options, focal_alpha=None,
                   weight=(kw["weight"] * kw["focal_alpha"]).astype(np.float32))
    x64 = x.astype(np.float64)
    for fn in (fastxent.cross_entropy, fastxent.cross_entropy_grad):
        assert ulp_distance_ok(fn(x, target, **options), fn(x64, target, **rounded),
                               np.float32, 2), fn.__name__
    xb, yb, kwb = _binary_case(("ulp", layout), "float32", "all", "weight")
    kwb64 = dict(kwb, weight=kwb["weight"].astype(np.float32))
    for fn in (fastxent.binary_cross_entropy, fastxent.binary_cross_entropy_grad):
        assert ulp_distance_ok(fn(xb, yb, reduction="none", **kwb),
                               fn(xb.astype(np.float64), yb.astype(np.float64),
                                  reduction="none", **kwb64), np.float32, 2), fn.__name__


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_confident_rows_keep_their_loss(dtype, gamma):
    """A confident row's focal loss (1 - p)^gamma (-log p) ~ (2 e^-lead)^(1 + gamma) keeps its
    relative precision, where 1 - p would cancel (mpmath for the exact value): within
    2 (1 + gamma) ulp, (1 - p)^gamma multiplying 1 - p's own error by gamma."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    lead = 30.0 if dtype == "float64" else 12.0
    z = np.array([[lead, 0.0, 0.0]], dtype=dtype)
    rest = 2 * mpmath.e ** -mpmath.mpf(lead)
    exact = float((rest / (1 + rest)) ** gamma * mpmath.log1p(rest))
    got = fastxent.cross_entropy(z, np.array([0]), focal_gamma=gamma)
    bound = 2 * (1 + gamma)
    assert ulp_distance_ok(got, exact, dtype, bound), (got, exact)
    x = np.array([lead], dtype=dtype)
    sig_neg = 1 / (1 + mpmath.e ** mpmath.mpf(lead))
    exact_binary = float(sig_neg ** gamma * mpmath.log1p(mpmath.e ** -mpmath.mpf(lead)))
    got_binary = fastxent.binary_cross_entropy(x, np.array([1.0], dtype=dtype),
                                               focal_gamma=gamma)
    assert ulp_distance_ok(got_binary, exact_binary, dtype, bound), (got_binary, exact_binary)


def test_softcap_keeps_small_logits():
    """c tanh(z / c) is z for tiny logits: the loss is the plain one."""
    z = np.array([[1e-30, -2e-30, 3e-31]])
    np.testing.assert_array_equal(fastxent.cross_entropy(z, np.array([1]), softcap=30.0),
                                  fastxent.cross_entropy(z, np.array([1])))


def test_softcap_bounds_logits():
    """Soft-capped logits lie in (-c, c): an infinite logit is c, its slope 0."""
    z = np.array([[np.inf, 0.0, -np.inf]])
    loss, grad = fastxent.cross_entropy_loss_and_grad(z, np.array([1]), softcap=2.0)
    u = np.array([2.0, 0.0, -2.0])
    expected = -(u[1] - np.log(np.exp(u).sum()))
    np.testing.assert_allclose(loss, expected, rtol=1e-15)
    assert grad[0, 0] == 0 and grad[0, 2] == 0 and grad[0, 1] < 0


@pytest.mark.parametrize("options", [{}, {"softcap": 3.0}, {"z_loss": 0.1, "focal_gamma": 1.0}])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_return_lse(dtype, layout, options):
    shape, axis = LAYOUTS[layout]
    x, target, _ = _multiclass_case(("lse", layout), shape, axis, dtype, "z_loss",
                                    "sample_weight_ignore")
    kw = dict(options, axis=axis, ignore_index=-100)
    loss, lse = fastxent.cross_entropy(x, target, return_lse=True, **kw)
    loss2, grad, lse2 = fastxent.cross_entropy_loss_and_grad(x, target, return_lse=True, **kw)
    # the same pass: the loss and gradient are those of the calls without return_lse
    np.testing.assert_array_equal(loss, fastxent.cross_entropy(x, target, **kw))
    np.testing.assert_array_equal(loss2, loss)
    np.testing.assert_array_equal(grad, fastxent.cross_entropy_grad(x, target, **kw))
    np.testing.assert_array_equal(lse2, lse)
    cap = options.get("softcap")
    u = x.astype(np.float64) if cap is None else cap * np.tanh(x.astype(np.float64) / cap)
    expected = np.logaddexp.reduce(u, axis=axis)                  # ignored rows too
    assert lse.shape == target.shape and lse.dtype == np.dtype(dtype)
    assert_close(lse, expected, dtype)


def test_z_loss_mean_divides_by_counted_rows():
    """Liger-Kernel's mean: the cross-entropy over the class-weighted denominator, the z-loss
    over the counted rows (z = [[0, 0], [0, log 3]], both rows counted, weights 1 and 3)."""
    z = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    y = np.array([0, 1])
    w = np.array([1.0, 3.0])
    ce = (np.log(2.0) * 1 + np.log(4 / 3) * 3) / 4
    zl = 0.5 * (np.log(2.0) ** 2 + np.log(4.0) ** 2) / 2
    np.testing.assert_allclose(fastxent.cross_entropy(z, y, weight=w, z_loss=0.5), ce + zl,
                               rtol=1e-15)
    per_row = fastxent.cross_entropy(z, y, weight=w, z_loss=0.5, reduction="none")
    np.testing.assert_allclose(per_row, [np.log(2.0) + 0.5 * np.log(2.0) ** 2,
                                         3 * np.log(4 / 3) + 0.5 * np.log(4.0) ** 2],
                               rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threads_and_in_place(dtype):
    n_rows = SERIAL_BELOW // 20 + 7
    x, target, kw = _multiclass_case("threads", (n_rows, 40), -1, dtype, "all", "weight")
    one = fastxent.cross_entropy_loss_and_grad(x, target, n_threads=1, **kw)
    two = fastxent.cross_entropy_loss_and_grad(x, target, n_threads=2, **kw)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    grad, hess = fastxent.cross_entropy_grad_hess(x, target, **kw)
    in_place = x.copy()
    fastxent.cross_entropy_grad(in_place, target, out=in_place, **kw)
    np.testing.assert_array_equal(in_place, grad)
    in_place = x.copy()
    fastxent.cross_entropy_grad_hess(in_place, target, hess_out=in_place, **kw)
    np.testing.assert_array_equal(in_place, hess)
    xb, yb, kwb = _binary_case("threads", dtype, "all", "weight", shape=(n_rows, 20))
    b1 = fastxent.binary_cross_entropy_grad(xb, yb, n_threads=1, **kwb)
    b2 = xb.copy()
    fastxent.binary_cross_entropy_grad(b2, yb, n_threads=2, out=b2, **kwb)
    np.testing.assert_array_equal(b1, b2)


def test_nan_rows():
    z = np.array([[np.nan, 1.0, 2.0], [1.0, 2.0, 3.0]])
    per_row, lse = fastxent.cross_entropy(z, np.array([0, 1]), focal_gamma=2.0, z_loss=0.1,
                                          reduction="none", return_lse=True)
    assert np.isnan(per_row[0]) and np.isnan(lse[0]) and np.isfinite(per_row[1])
    grad, hess = fastxent.cross_entropy_grad_hess(z, np.array([0, 1]), softcap=3.0)
    assert np.isnan(grad[0]).all() and np.isnan(hess[0]).all() and np.isfinite(grad[1]).all()


@pytest.mark.parametrize("call, kwargs, exc, fragment", [
    (fastxent.cross_entropy, {"z_loss": -1.0}, ValueError, "z_loss must be a finite number >= 0"),
    (fastxent.cross_entropy, {"z_loss": np.nan}, ValueError, "z_loss"),
    (fastxent.cross_entropy, {"softcap": 0.0}, ValueError, "softcap must be None or a finite"),
    (fastxent.cross_entropy, {"softcap": np.inf}, ValueError, "softcap"),
    (fastxent.cross_entropy, {"softcap": "2"}, TypeError, "softcap"),
    (fastxent.cross_entropy, {"focal_gamma": -0.5}, ValueError, "focal_gamma"),
    (fastxent.cross_entropy, {"focal_alpha": np.ones(4)}, ValueError,
     "focal_alpha must be a number or have shape (3,)"),
    (fastxent.cross_entropy, {"focal_alpha": [1.0, -1.0, 1.0]}, ValueError,
     "focal_alpha[1] = -1.0"),
    (fastxent.cross_entropy, {"return_lse": 1}, TypeError, "return_lse must be a bool"),
    (fastxent.cross_entropy, {"return_lse": True, "from_logits": False}, ValueError,
     "return_lse needs logits"),
    (fastxent.cross_entropy, {"z_loss": 0.1, "from_logits": False}, ValueError,
     "z_loss is a function of the logits"),
    (fastxent.cross_entropy_grad_hess, {"softcap": 1.0, "from_logits": False}, ValueError,
     "softcap applies to logits"),
    (fastxent.binary_cross_entropy, {"softcap": 1.0, "from_logits": False}, ValueError,
     "softcap applies to logits"),
    (fastxent.binary_cross_entropy, {"focal_alpha": 1.5}, ValueError, "focal_alpha must be"),
    (fastxent.binary_cross_entropy_grad, {"focal_gamma": np.inf}, ValueError, "focal_gamma"),
])
def test_errors_before_anything_is_written(call, kwargs, exc, fragment):
    x = np.array([[0.2, 0.3, 0.4], [0.1, 0.1, 0.7]])
    target = np.array([1, 2]) if "binary" not in call.__name__ else np.ones_like(x)
    out = {} if "grad" not in call.__name__ else {"out": x}
    raises_untouched(call, (x, target), dict(kwargs, **out), exc, [fragment], buffers=[x])


def test_numpy_scalars_and_negative_binary_alpha():
    x = np.array([0.5, -1.0])
    y = np.array([1.0, 0.0])
    base = fastxent.binary_cross_entropy(x, y, focal_gamma=2.0)
    np.testing.assert_array_equal(
        fastxent.binary_cross_entropy(x, y, focal_gamma=np.float32(2.0), focal_alpha=-1),
        base)                                    # torchvision: alpha < 0 is no alpha
    z = np.array([[0.5, -1.0]])
    np.testing.assert_array_equal(
        fastxent.cross_entropy(z, np.array([0]), z_loss=np.float64(0.5), softcap=np.int64(3)),
        fastxent.cross_entropy(z, np.array([0]), z_loss=0.5, softcap=3.0))


def _keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("alpha", [0.25, [0.1, 0.5, 0.9, 0.3]])
def test_keras_categorical_focal(alpha):
    keras = _keras()
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(4), size=12) * 0.98 + 0.005
    target = np.eye(4)[rng.integers(0, 4, 12)]
    loss = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=2.0,
                                                     label_smoothing=0.1)
    expected = float(keras.ops.convert_to_numpy(loss(target, p)))
    got = fastxent.cross_entropy(p, target, from_logits=False, focal_gamma=2.0,
                                 focal_alpha=alpha, label_smoothing=0.1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_keras_binary_focal():
    keras = _keras()
    rng = np.random.default_rng(6)
    x = rng.normal(0, 2, (10, 3))
    y = rng.integers(0, 2, (10, 3)).astype(float)
    loss = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3,
                                                gamma=1.5, from_logits=True,
                                                label_smoothing=0.1)
    expected = float(keras.ops.convert_to_numpy(loss(y, x)))
    got = fastxent.binary_cross_entropy(x, y, focal_gamma=1.5, focal_alpha=0.3,
                                        label_smoothing=0.1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# ---- regressions found by a red-team pass -----------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_confident_row_with_focal_and_every_class_weighted(dtype):
    """With smoothing or soft targets every class has a target weight; the arg-max's 1 - p of 0
    (a row 40 ahead) made the summed focal factors NaN, and the gradient with them."""
    z = np.array([[40.0, 0.0, 0.0]], dtype=dtype)
    for target, kw in ((np.array([0]), {"label_smoothing": 0.1}),
                       (np.array([[0.9, 0.05, 0.05]], dtype=dtype), {})):
        grad, hess = fastxent.cross_entropy_grad_hess(z, target, focal_gamma=2.0, **kw)
        assert np.isfinite(grad).all() and np.isfinite(hess).all()
        a = np.array([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]) if kw else target[0].astype(float)
        # p = [1, e^-40, e^-40]: each other class's term a_c (1 - p_c)^2 (-log p_c) has slope
        # -a_c on its own logit and the arg-max's term vanishes: grad = [sum a_c, -a_1, -a_2]
        np.testing.assert_allclose(grad[0], [a[1] + a[2], -a[1], -a[2]], rtol=1e-6)
    grad, hess = fastxent.cross_entropy_grad_hess(np.zeros((1, 1), dtype), np.array([0]),
                                                  focal_gamma=2.0, label_smoothing=0.1)
    assert grad[0, 0] == 0 and hess[0, 0] == 0      # one class: p = 1, nothing to learn


def test_infinite_logits_with_focal_terms_give_the_limit():
    """As without options: a +inf logit at the label costs 0 with gradient 0, elsewhere inf
    with gradient (1 at it, -1 at the label); binary x = +inf, y = 0: inf, gradient 1."""
    z = np.array([[np.inf, 0.0, 0.0]])
    for label, loss_expected, grad_expected in ((0, 0.0, [0.0, 0.0, 0.0]),
                                                (1, np.inf, [1.0, -1.0, 0.0])):
        loss, grad = fastxent.cross_entropy_loss_and_grad(z, np.array([label]), focal_gamma=2.0)
        assert loss == loss_expected
        np.testing.assert_array_equal(grad[0], grad_expected)
    grad, hess = fastxent.cross_entropy_grad_hess(np.array([[-np.inf]]), np.array([0]),
                                                  focal_gamma=2.0)
    assert grad[0, 0] == 0 and hess[0, 0] == 0
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(np.array([np.inf]), np.array([0.0]),
                                                            focal_gamma=2.0)
    assert loss == np.inf and grad[0] == 1.0


def test_focal_probability_of_one_with_eps_zero():
    """eps = 0 lets p = 1 through: the gradient's limit is 0 there (F nl / q is F, not
    inf * 0), and the Hessian's is +inf for gamma < 1."""
    grad, hess = fastxent.cross_entropy_grad_hess(np.array([[1.0, 0.0]]), np.array([0]),
                                                  from_logits=False, eps=0.0, focal_gamma=0.5)
    assert grad[0, 0] == 0 and hess[0, 0] == np.inf
    grad, hess = fastxent.cross_entropy_grad_hess(np.array([[1.0, 0.0]]), np.array([0]),
                                                  from_logits=False, eps=0.0, focal_gamma=1.0)
    assert grad[0, 0] == 0 and hess[0, 0] == 2.0


def test_float32_class_factors_that_do_not_fit_raise():
    x = np.zeros((2, 3), np.float32)
    for weight, alpha in ((1e20, 1e20), (1e-30, 1e-20)):
        raises_untouched(fastxent.cross_entropy, (x, np.array([0, 1])),
                         {"weight": [weight] * 3, "focal_alpha": alpha}, ValueError,
                         ["weight * focal_alpha =", "does not fit in float32"])
    np.testing.assert_allclose(
        fastxent.cross_entropy(x.astype(np.float64), np.array([0, 1]), weight=[1e-30] * 3,
                               focal_alpha=1e-20), np.log(3) * 1e-20, rtol=1e-14)
