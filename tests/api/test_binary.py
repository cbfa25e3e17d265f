"""Binary cross-entropy against the float64 NumPy reference."""

import itertools
import zlib

import numpy as np
import pytest

import fastxent
from fastxent._core.threads import SERIAL_BELOW
from helpers import (
    BINARY,
    REDUCTIONS,
    assert_close,
    call,
    check_result_types,
    compute_dtype,
    logits,
)
from reference import binary_cross_entropy_ref, fd_grad

DTYPES = ("float32", "float64", "int64", "float16")
TARGETS = ("same", "float64", "int8", "soft")


def _inputs(rng, shape, dtype, from_logits, target):
    cdt = compute_dtype(dtype)
    if from_logits:
        x = logits(rng, shape, dtype, scale=4.0)
    elif np.dtype(dtype).kind in "iu":
        x = rng.integers(0, 2, size=shape).astype(dtype)
    else:
        x = rng.uniform(0.01, 0.99, size=shape).astype(dtype)
    if target == "soft":
        y = rng.uniform(0.0, 1.0, size=shape).astype(cdt)
    else:
        y = rng.integers(0, 2, size=shape).astype(cdt if target == "same" else target)
    return x, y


def _atol(x, dtype, from_logits, w=1.0):
    """float32 logits: (1 - y) z + softplus(-z) loses ~ulp(|z|) absolutely per element."""
    if not from_logits or compute_dtype(dtype) != np.float32:
        return 0.0
    return 4 * float(np.finfo(np.float32).eps) * float(np.max(np.abs(x) * w, initial=0.0))


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("func", ["loss", "grad", "loss_and_grad"])
def test_against_reference(func, from_logits, dtype, target, n_threads):
    """Every function x dtype x target dtype x n_threads, each with every reduction, with and
    without `out`."""
    rng = np.random.default_rng(zlib.crc32(repr((func, from_logits, dtype, target)).encode()))
    big = n_threads == 2 and target in ("same", "soft")
    shape = (SERIAL_BELOW // 16 + 5, 16) if big else (9, 7)
    x, y = _inputs(rng, shape, dtype, from_logits, target)
    cdt = compute_dtype(dtype)
    for reduction, use_out in itertools.product(REDUCTIONS, (False, True)):
        if func == "loss" and use_out:
            continue
        out = np.full(x.shape, 3.5, dtype=cdt) if use_out else None
        loss, grad = call(BINARY, func, x, y, out=out, from_logits=from_logits,
                          reduction=reduction, n_threads=n_threads)
        check_result_types(loss, grad, x.shape, x.shape, reduction, cdt, out)
        ref_loss, ref_grad = binary_cross_entropy_ref(x, y, from_logits=from_logits,
                                                      reduction=reduction)
        if loss is not None:
            atol = _atol(x, dtype, from_logits) / (x.size if reduction == "mean" else 1)
            if reduction == "sum":
                atol *= np.sqrt(x.size)
            assert_close(loss, ref_loss, cdt, atol=atol, what=f"loss {reduction} {use_out}")
        if grad is not None:
            assert_close(grad, ref_grad, cdt, what=f"grad {reduction} {use_out}")


ROWS, COLS, WIDE = 6, 5, 70           # WIDE >= 64: per-row/column weights read in place
OPTION_SETS = {
    "plain": {},
    "w_scalar": {"weight": 2.5},
    "w_full": {"weight": "full"},
    "w_col": {"weight": "col"},
    "w_row": {"weight": "row"},
    "w_mid": {"weight": "mid"},
    "pos_weight": {"pos_weight": "col"},
    "pos_weight_scalar": {"pos_weight": 3.0},
    "pos_weight_full": {"pos_weight": "full"},
    "w_row_pos_col": {"weight": "row", "pos_weight": "col"},
    "ignore": {"ignore_index": -1},
    "smoothing": {"label_smoothing": 0.2},
    "all": {"weight": "row", "pos_weight": "col", "ignore_index": -1, "label_smoothing": 0.1},
    "eps": {"eps": 0.05},
}
SHAPES = [(ROWS, COLS), (ROWS, WIDE), (4, 3, COLS), (17,), (3, 2, WIDE)]


def _weight(rng, kind, shape):
    """Weights of a broadcast kind: full, per column (last axis), per row (trailing 1), or a
    middle broadcast (1 on a middle axis) that must be expanded."""
    if not isinstance(kind, str):
        return kind
    if kind == "full":
        return rng.uniform(0.2, 2.0, size=shape)
    if kind == "col":
        return rng.uniform(0.2, 2.0, size=shape[-1:])
    if kind == "row":
        return rng.uniform(0.2, 2.0, size=shape[:-1] + (1,))
    if kind == "mid":
        return rng.uniform(0.2, 2.0, size=(shape[0],) + (1,) * (len(shape) - 2) + shape[-1:])
    raise ValueError(kind)


def _option_cases():
    for (name, opts), shape, from_logits in itertools.product(
            OPTION_SETS.items(), SHAPES, (True, False)):
        if len(shape) == 1 and ("row" in opts.values() or "mid" in opts.values()):
            continue
        yield pytest.param(opts, shape, from_logits, id=f"{name}-{shape}-{from_logits}")


@pytest.mark.parametrize("opts, shape, from_logits", list(_option_cases()))
def test_options_against_reference(opts, shape, from_logits):
    """weight (every broadcast), pos_weight, ignore_index, label_smoothing, eps, combined,
    for every reduction, in float32 and float64."""
    rng = np.random.default_rng(zlib.crc32(repr((opts, shape, from_logits)).encode()))
    for dtype, reduction in itertools.product(("float32", "float64"), REDUCTIONS):
        x, y = _inputs(rng, shape, dtype, from_logits, "soft")
        kwargs = {k: _weight(rng, v, shape) if k in ("weight", "pos_weight") else v
                  for k, v in opts.items()}
        if "ignore_index" in kwargs:
            y.reshape(-1)[::4] = kwargs["ignore_index"]
        if "eps" in kwargs and not from_logits:
            x.reshape(-1)[::3] = 0.01
            x.reshape(-1)[1::3] = 0.99
        loss, grad = fastxent.binary_cross_entropy_loss_and_grad(
            x, y, from_logits=from_logits, reduction=reduction, **kwargs)
        loss_only = fastxent.binary_cross_entropy(x, y, from_logits=from_logits,
                                                  reduction=reduction, **kwargs)
        check_result_types(loss, grad, x.shape, x.shape, reduction, dtype)
        ref_loss, ref_grad = binary_cross_entropy_ref(x, y, from_logits=from_logits,
                                                      reduction=reduction, **kwargs)
        atol = 8 * _atol(x, dtype, from_logits)
        if reduction != "none":
            atol *= np.sqrt(x.size) / (x.size if reduction == "mean" else 1)
        what = f"{dtype} {reduction}"
        assert_close(loss, ref_loss, dtype, atol=atol, what="loss " + what)
        assert_close(loss_only, ref_loss, dtype, atol=atol, what="loss only " + what)
        assert_close(grad, ref_grad, dtype, what="grad " + what)


def test_ignore_index_excluded_from_mean_count():
    """Masked elements give 0 loss and 0 gradient, and mean divides by the counted ones."""
    z = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.3]])
    y = np.array([[1.0, -1.0, 0.0], [-1.0, -1.0, 1.0]])
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(z, y, ignore_index=-1)
    keep = y != -1
    expected = binary_cross_entropy_ref(z[keep], y[keep], reduction="sum")[0] / keep.sum()
    assert float(loss) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_array_equal(grad[~keep], 0.0)
    none = fastxent.binary_cross_entropy(z, y, ignore_index=-1, reduction="none")
    np.testing.assert_array_equal(none[~keep], 0.0)


def test_all_ignored():
    """Every element ignored: mean is NaN, sum is 0, the gradient is 0."""
    y = np.full((2, 3), -1.0)
    z = np.ones((2, 3))
    assert np.isnan(fastxent.binary_cross_entropy(z, y, ignore_index=-1))
    assert fastxent.binary_cross_entropy(z, y, ignore_index=-1, reduction="sum") == 0.0
    np.testing.assert_array_equal(fastxent.binary_cross_entropy_grad(z, y, ignore_index=-1),
                                  0.0)


def test_weight_mean_divides_by_count():
    """PyTorch semantics: mean with weights divides by the element count, not by the weights."""
    z = np.array([0.3, -0.7, 1.1, 2.0])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    total = fastxent.binary_cross_entropy(z, y, weight=w, reduction="sum")
    mean = fastxent.binary_cross_entropy(z, y, weight=w)
    assert float(mean) == pytest.approx(float(total) / 4, rel=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opts", [
    {}, {"weight": np.array([0.5, 2.0, 1.5])}, {"pos_weight": np.array([3.0, 0.5, 1.0])},
    {"label_smoothing": 0.2}, {"ignore_index": -1},
    {"weight": np.array([[0.5], [2.0]]), "pos_weight": 2.0, "label_smoothing": 0.1}],
    ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("from_logits", [True, False])
def test_gradient_finite_differences(from_logits, opts, reduction):
    """grad == 4th-order central differences of the (reduced, or summed) loss."""
    rng = np.random.default_rng(3)
    if from_logits:
        x, h = rng.normal(0, 2, size=(2, 3)), 1e-3
    else:
        x, h = rng.uniform(0.05, 0.95, size=(2, 3)), 1e-4
    y = np.array([[1.0, 0.0, 0.3], [0.0, 1.0, -1.0 if "ignore_index" in opts else 0.8]])

    def f(v):
        return np.sum(fastxent.binary_cross_entropy(v, y, from_logits=from_logits,
                                                    reduction=reduction, **opts))

    grad = fastxent.binary_cross_entropy_grad(x, y, from_logits=from_logits,
                                              reduction=reduction, **opts)
    expected = fd_grad(f, x, h)
    np.testing.assert_allclose(grad, expected, rtol=1e-7, atol=1e-9 * np.abs(expected).max())
    ref_grad = binary_cross_entropy_ref(x, y, from_logits=from_logits, reduction=reduction,
                                        **opts)[1]
    np.testing.assert_allclose(ref_grad, expected, rtol=1e-7,
                               atol=1e-9 * np.abs(expected).max())


def _exact_smoothed_binary(x, y, smoothing, from_logits):
    """Loss and gradient of one element in 50-digit arithmetic (mpmath)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(50):
        x, e = mpmath.mpf(float(x)), mpmath.mpf(smoothing)
        ys = y * (1 - e) + e / 2
        if from_logits:
            loss = (1 - ys) * mpmath.log1p(mpmath.exp(x)) + ys * mpmath.log1p(mpmath.exp(-x))
            grad = (1 - ys) / (1 + mpmath.exp(-x)) - ys / (1 + mpmath.exp(x))
        else:
            loss = -(ys * mpmath.log(x) + (1 - ys) * mpmath.log1p(-x))
            grad = -(ys / x - (1 - ys) / (1 - x))
        return float(loss), float(grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("from_logits, x", [(False, 0.9998683), (False, 1.3e-4),
                                            (True, 12.0), (True, -12.0)])
def test_label_smoothing_keeps_small_target_sides_accurate(dtype, from_logits, x):
    """With label smoothing e and y = 1 (or 0), 1 - y' = e / 2 (or y' = e / 2) is tiny; both
    sides are formed where they are small, so a gradient that nearly cancels keeps its
    precision (float32 probability 0.9998683, e = 1e-5: relative error 5e-5 before; logit 12:
    6e-3)."""
    xs = np.array([x, x], dtype)
    y = np.array([1.0, 0.0])
    smoothing = 1e-5
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(
        xs, y, from_logits=from_logits, label_smoothing=smoothing, reduction="none")
    exact = np.array([_exact_smoothed_binary(v, t, smoothing, from_logits)
                      for v, t in zip(xs, y, strict=True)])
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(loss, exact[:, 0], rtol=16 * eps, atol=0)
    np.testing.assert_allclose(grad, exact[:, 1], rtol=16 * eps, atol=0)


def test_zero_dim_input():
    """A 0-d input is one element: the per-element loss and the gradient are 0-d too."""
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(np.array(0.5), np.array(1.0),
                                                             reduction="none")
    expected = binary_cross_entropy_ref(np.array(0.5), np.array(1.0), reduction="none")
    assert np.shape(loss) == ()
    assert np.shape(grad) == ()
    np.testing.assert_allclose(loss, expected[0], rtol=1e-15)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-15)


def test_bool_target_counts_as_zero_one():
    """Boolean targets are 0/1."""
    z = np.array([0.2, -1.3, 0.7])
    yb = np.array([True, False, True])
    assert fastxent.binary_cross_entropy(z, yb) == fastxent.binary_cross_entropy(
        z, yb.astype(np.float64))
