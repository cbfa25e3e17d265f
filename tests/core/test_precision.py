"""Accuracy on adversarial rows against exact values (mpmath, or float64 for float32 input).

The bounds in the "measured" tests below are the figures README.md's numerical contract
quotes; each test names the rows it measures.
"""

import numpy as np
import pytest

import fastxent
from reference import ulp_distance_ok

mpmath = pytest.importorskip("mpmath")
mp = mpmath.mp
inf = np.inf

# Exact references for many rows are computed in 80-bit long double (64-bit significand), and
# the worst rows again with mpmath.
needs_long_double = pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63, reason="the bulk reference needs 80-bit long double")

F32_ULP = 8            # float32 loss: within 8 ulp of the exact value
F64_REL = 1e-14        # float64 loss: within 1e-14 relative
GRAD_REL = {"float32": F32_ULP * float(np.finfo(np.float32).eps), "float64": F64_REL}


def exact_row(z, y):
    """Exact loss ``log sum_c exp(z_c - z_y)`` and gradient ``softmax(z) - onehot(y)`` of one
    row (masked -inf classes drop out), the true-class entry as ``-sum_{c != y} p_c``."""
    with mp.workdps(60):
        zs = [mpmath.mpf(float(v)) for v in z]
        zy = zs[y]
        terms = [mpmath.exp(v - zy) if np.isfinite(float(v)) else mpmath.mpf(0) for v in zs]
        total = mpmath.fsum(terms)
        loss = mpmath.log(total)
        p = [t / total for t in terms]
        grad = [p[c] for c in range(len(p))]
        grad[y] = -mpmath.fsum(p[c] for c in range(len(p)) if c != y)
        return float(loss), np.array([float(g) for g in grad])


ROWS = {
    "confident_20": ([20.0, 0.0, 0.0], 0),
    "confident_30": ([30.0, 1.0, -2.0, 0.5], 0),
    "confident_88": ([88.0, 0.0, 1.0], 0),
    "very_confident": ([16.0, -1.0, 0.0, -3.0, 2.0], 0),
    "huge_pos": ([1e4, -1e4, 0.0], 0),
    "huge_wrong": ([1e4, -1e4, 0.0], 1),
    "huge_mid": ([1e4, -1e4, 0.0], 2),
    "huge_tie": ([1e4, 1e4, -1e4], 0),
    "near_tie": ([5.0, 5.0000005, 4.9999995], 1),
    "masked": ([-inf, 3.0, 2.5, -inf], 1),
    "masked_confident": ([-inf, 25.0, 0.0, -inf, 1.0], 1),
    "masked_wrong": ([2.0, -inf, 7.5], 0),
    "large_offset": ([1000.0, 1001.0, 999.0], 1),
    "tiny_spread": ([1e-7, 0.0, -1e-7], 2),
    "wide": (list(np.linspace(-30, 30, 64)), 63),
    "wide_wrong": (list(np.linspace(-30, 30, 64)), 0),
    # the gap z_c - z_max is not exact in float32: error amplified by |z_c - z_max|
    "confident_inexact_gap": ([1.0330955, -0.26393658, 35.042816, -1.1143739, -0.41476578,
                               1.5553992], 2),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_confident_row_float32_example(dtype):
    """float32 logits [20, 0, 0], label 0 -> 4.1223073758387905e-09 (PyTorch float32: 0.0)."""
    x = np.array([[20.0, 0.0, 0.0]], dtype=dtype)
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, np.array([0]))
    assert loss.dtype == dtype
    assert float(loss) == pytest.approx(4.1223073758387905e-09, rel=1e-6)
    assert float(grad[0, 0]) == pytest.approx(-4.1223073758387905e-09, rel=1e-6)
    assert float(grad[0, 1]) == pytest.approx(2.0611536879193953e-09, rel=1e-6)


@pytest.mark.parametrize("name", list(ROWS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adversarial_rows(name, dtype):
    """Loss within a few ulp (float32) or 1e-14 relative (float64) of the exact value of the
    rounded inputs; gradient within a few ulp of the row's largest |g|, the true-class entry
    relatively exact."""
    z, y = ROWS[name]
    x = np.array([z], dtype=dtype)
    exact_loss, exact_grad = exact_row(x[0], y)
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, np.array([y]), reduction="none")
    if dtype == "float32":
        assert ulp_distance_ok(loss[0], exact_loss, np.float32, F32_ULP), (loss[0], exact_loss)
    else:
        assert abs(float(loss[0]) - exact_loss) <= (
            F64_REL * abs(exact_loss) + np.spacing(exact_loss)), (loss[0], exact_loss)
    ulp_scale = GRAD_REL[dtype]
    gmax = np.max(np.abs(exact_grad))
    np.testing.assert_allclose(grad[0], exact_grad, rtol=0, atol=ulp_scale * gmax)
    # true-class gradient: relative, not just on the row's scale
    tiny = float(np.finfo(dtype).tiny)
    assert abs(float(grad[0, y]) - exact_grad[y]) <= ulp_scale * abs(exact_grad[y]) + tiny


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adversarial_rows_batched_and_reduced(dtype):
    """All adversarial rows of 3 classes in one batch (any order): the sum equals the sum of
    the exact losses, accumulated in float64."""
    rows = [(z, y) for z, y in ROWS.values() if len(z) == 3]
    x = np.array([z for z, _ in rows], dtype=dtype)
    y = np.array([y for _, y in rows])
    exact = [exact_row(x[i], y[i])[0] for i in range(len(rows))]
    total = fastxent.cross_entropy(x, y, reduction="sum")
    none = fastxent.cross_entropy(x, y, reduction="none")
    ok = ulp_distance_ok if dtype == "float32" else None
    if ok:
        assert ulp_distance_ok(none, exact, np.float32, F32_ULP)
    else:
        np.testing.assert_allclose(none, exact, rtol=F64_REL, atol=1e-300)
    assert float(total) == pytest.approx(sum(exact), rel=8 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_confident_rows_random(dtype):
    """Random confident rows (the label leads by 10-40): float32 losses within a few ulp."""
    rng = np.random.default_rng(21)
    x = rng.normal(size=(40, 6))
    y = rng.integers(0, 6, size=40)
    x[np.arange(40), y] += rng.uniform(10, 40, size=40)
    x = x.astype(dtype)
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, reduction="none")
    exact = [exact_row(x[i], y[i]) for i in range(40)]
    exact_loss = np.array([e[0] for e in exact])
    exact_true = np.array([e[1][y[i]] for i, e in enumerate(exact)])
    if dtype == "float32":
        assert ulp_distance_ok(loss, exact_loss, np.float32, F32_ULP)
    else:
        np.testing.assert_allclose(loss, exact_loss, rtol=F64_REL)
    np.testing.assert_allclose(grad[np.arange(40), y], exact_true, rtol=GRAD_REL[dtype])


def _exact_binary(z, y):
    """Exact ``(1-y) z + softplus(-z)`` and ``sigmoid(z) - y`` for y in {0, 1}."""
    with mp.workdps(60):
        zz = mpmath.mpf(float(z))
        loss = mpmath.log1p(mpmath.exp(-zz)) + (1 - y) * zz
        grad = 1 / (1 + mpmath.exp(-zz)) - y
        return float(loss), float(grad)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_extreme_logits(dtype):
    """Binary losses and gradients at large |z| are relatively exact (no 1 - sigmoid
    cancellation, no overflow)."""
    z = np.array([30.0, -30.0, 80.0, -80.0, 1e4, -1e4, 15.0, -15.0, 1e-8, 0.0], dtype=dtype)
    y = np.array([1, 0, 1, 0, 0, 1, 1, 0, 1, 0], dtype=dtype)
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(z, y, reduction="none")
    exact = [_exact_binary(a, b) for a, b in zip(z, y, strict=True)]
    el = np.array([e[0] for e in exact])
    eg = np.array([e[1] for e in exact])
    if dtype == "float32":
        assert ulp_distance_ok(loss, el, np.float32, F32_ULP), (loss, el)
        assert ulp_distance_ok(grad, eg, np.float32, F32_ULP), (grad, eg)
    else:
        np.testing.assert_allclose(loss, el, rtol=F64_REL, atol=1e-300)
        np.testing.assert_allclose(grad, eg, rtol=F64_REL, atol=1e-300)


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_binary_float32_logit_loss_within_ulps(target):
    """float32 binary CE with logits over a dense grid of logits (and tiny ones) is within
    2.5 ulp of the float64 value: softplus(-|z|) takes exp and an inline log1p."""
    z = np.concatenate([np.linspace(-40, 40, 400_001), np.geomspace(1e-8, 40, 50_000),
                        -np.geomspace(1e-8, 40, 50_000)]).astype(np.float32)
    y = np.full_like(z, target)
    loss = fastxent.binary_cross_entropy(z, y, reduction="none")
    zz = z.astype(np.float64)
    exact = np.maximum(zz, 0) - zz * target + np.log1p(np.exp(-np.abs(zz)))
    ulps = np.abs(loss - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 2.5, (ulps.max(), z[ulps.argmax()])


@pytest.mark.parametrize("target", [0.0, 1.0])
def test_binary_float64_logit_loss_and_grad_within_ulps(target):
    """float64 binary CE with logits (inline log1p on [0, 1], libmvec exp) against an 80-bit
    long double reference: loss within 3 ulp, gradient within 4 ulp (libmvec's exp: <= 4)."""
    z = np.concatenate([np.linspace(-700, 700, 200_001), np.geomspace(1e-300, 700, 50_000),
                        -np.geomspace(1e-300, 700, 50_000)])
    y = np.full_like(z, target)
    loss, grad = fastxent.binary_cross_entropy_loss_and_grad(z, y, reduction="none")
    zl = z.astype(np.longdouble)
    e = np.exp(-np.abs(zl))
    exact = np.maximum(zl, 0) - zl * target + np.log1p(e)
    big, small = 1 / (1 + e), e / (1 + e)
    sig, sig_neg = np.where(zl >= 0, big, small), np.where(zl >= 0, small, big)
    exact_grad = (1 - target) * sig - target * sig_neg
    for got, want, n_ulp in ((loss, exact, 3), (grad, exact_grad, 4)):
        want64 = want.astype(np.float64)
        ulps = np.abs((got - want).astype(np.float64)) / np.spacing(np.abs(want64))
        assert ulps.max() <= n_ulp, (ulps.max(), z[ulps.argmax()])


def test_float64_softmax_small_terms_within_ulps():
    """float64 softmax of rows [0, -x] over x in [0, 745] (the inline exp, subnormal results
    included): the small probability within 2 ulp of the long double value."""
    x = np.concatenate([np.linspace(0, 745, 400_001), np.geomspace(1e-300, 745, 50_000)])
    z = np.stack([np.zeros_like(x), -x], axis=1)
    p = fastxent.softmax(z)[:, 1]
    e = np.exp(-x.astype(np.longdouble))
    exact = (e / (1 + e)).astype(np.float64)
    ulps = np.abs(p - exact) / np.spacing(exact)
    assert ulps.max() <= 2, (ulps.max(), x[ulps.argmax()])


# ---- measured bounds: the figures README.md's numerical contract quotes ----------------------
# Rows of at most 64 classes take the short-row path (vectorised across rows), wider rows the
# per-row path; each bound is measured on both.
SHORT_WIDE = {"short": (10, 64), "wide": (100, 1000)}
EXP_ULP = {"float32": 1.05, "float64": 1.05}     # the inlined exp, rounding of z - m carried
F64_CONFIDENT_ULP = {"short": 5.0, "wide": 8.0}  # float64, every other logit 30-110 below
F64_NORMAL_ULP = {"short": 3.0, "wide": 3.0}     # float64, N(0, 1) logits
F32_NORMAL_ULP = {"short": 1.5, "wide": 1.5}     # float32, N(0, 1) logits
F32_LEAD15_ULP = {"short": 2.5, "wide": 4.5}     # float32, the label leads by 15


def _mp_loss(z, y):
    """Exact loss ``log sum_c exp(z_c - z_y)`` of one row as an mpmath number (60 digits)."""
    with mp.workdps(60):
        zy = mpmath.mpf(float(z[y]))
        return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - zy) for v in z))


def _loss_ulps(x, y, got):
    """``|got - exact| / spacing(exact)`` per row, spacing in x's dtype at the exact loss.

    The exact loss ``(m - z_y) + log1p(sum_{c != argmax} exp(z_c - m))`` is computed in
    long double (expl and the long double sum: about 1e-3 ulp of float64); the 8 worst rows
    are recomputed with mpmath, which must agree with it to 0.01 ulp.
    """
    n = len(x)
    xl = x.astype(np.longdouble)
    k = np.argmax(x, axis=1)
    m = xl[np.arange(n), k]
    terms = np.exp(xl - m[:, None])
    terms[np.arange(n), k] = 0
    exact = (m - xl[np.arange(n), y]) + np.log1p(terms.sum(axis=1))
    spacing = np.spacing(exact.astype(x.dtype)).astype(np.longdouble)
    ulps = np.abs(got.astype(np.longdouble) - exact) / spacing
    for i in np.argsort(ulps)[-8:]:
        hi = float(exact[i])                     # the long double value is hi + lo exactly
        lo = float(exact[i] - np.longdouble(hi))
        with mp.workdps(60):
            ref = _mp_loss(x[i], y[i])
            ulp = mpmath.mpf(float(spacing[i]))
            assert abs(mpmath.mpf(hi) + mpmath.mpf(lo) - ref) <= 0.01 * ulp, i
            ulps[i] = float(abs(mpmath.mpf(float(got[i])) - ref) / ulp)
    return ulps.astype(np.float64)


def _max_loss_ulps(rows):
    """Largest loss error in ulps over (x, y) batches, computed with reduction="none"."""
    return max(float(_loss_ulps(x, y, fastxent.cross_entropy(x, y, reduction="none")).max())
               for x, y in rows)


def _normal_rows(rng, n_rows, n_classes, dtype, lead=0.0):
    """N(0, 1) logits with random labels; the label's logit raised by `lead`."""
    x = rng.standard_normal((n_rows, n_classes))
    y = rng.integers(0, n_classes, size=n_rows)
    x[np.arange(n_rows), y] += lead
    return x.astype(dtype), y


def _confident_rows(rng, n_rows, n_classes):
    """float64 rows whose label holds the max m (not an integer) and every other logit lies
    30-110 below it: z - m is not exact in float64, and the loss is the sum of tiny terms."""
    m = rng.uniform(1.0, 50.0, size=n_rows) * rng.choice([-1.0, 1.0], size=n_rows)
    x = m[:, None] - rng.uniform(30.0, 110.0, size=(n_rows, n_classes))
    y = rng.integers(0, n_classes, size=n_rows)
    x[np.arange(n_rows), y] = m
    return x, y


def _n_rows(n_classes):
    return 20_000 if n_classes <= 100 else 2_000


@needs_long_double
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inline_exp_within_ulps(dtype):
    """The inlined exp, read out through softmax rows [m, z] (their softmax is exp(z - m)
    itself once exp(z - m) is below half an ulp of 1): within 1.05 ulp of the exact
    exp(z - m) for z - m over [-745, -37] (float64) or [-103.9, -17.4] (float32), 400 001
    exact and 400 000 inexact differences; the rounding of z - m is carried into exp."""
    lo, hi = (-745.0, -37.0) if dtype == "float64" else (-103.9, -17.4)
    rng = np.random.default_rng(23)
    gap = np.linspace(lo, hi, 400_001)
    m = rng.uniform(1.0, 50.0, size=400_000) * rng.choice([-1.0, 1.0], size=400_000)
    z = np.concatenate([gap, m + rng.uniform(lo, hi, size=400_000)]).astype(dtype)
    m = np.concatenate([np.zeros_like(gap), m]).astype(dtype)
    got = fastxent.softmax(np.stack([m, z], axis=1))[:, 1]
    exact = np.exp(z.astype(np.longdouble) - m.astype(np.longdouble))
    ulps = np.abs(got - exact) / np.spacing(exact.astype(dtype)).astype(np.longdouble)
    assert ulps.max() <= EXP_ULP[dtype], (float(ulps.max()), z[ulps.argmax()], m[ulps.argmax()])


@needs_long_double
@pytest.mark.parametrize("path", ["short", "wide"])
def test_float64_confident_rows_within_ulps(path):
    """float64 rows whose label holds the max and every other logit lies 30-110 below it
    (z - m inexact; 20 000 rows of 10 and 64 classes, 20 000 of 100 and 2 000 of 1 000):
    loss within 5 ulp (short rows) / 8 ulp (wide rows) of the exact value. Before the
    rounding of z - m was carried into exp: 63 ulp (short) and 33 ulp (wide)."""
    rng = np.random.default_rng(230)
    rows = [_confident_rows(rng, _n_rows(c), c) for c in SHORT_WIDE[path]]
    assert _max_loss_ulps(rows) <= F64_CONFIDENT_ULP[path]


@needs_long_double
@pytest.mark.parametrize("path", ["short", "wide"])
def test_float64_normal_rows_within_ulps(path):
    """float64 N(0, 1) logits, random labels (20 000 rows of 10, 64 and 100 classes, 2 000
    of 1 000): loss within 3 ulp of the exact value on both row paths."""
    rng = np.random.default_rng(231)
    rows = [_normal_rows(rng, _n_rows(c), c, np.float64) for c in SHORT_WIDE[path]]
    assert _max_loss_ulps(rows) <= F64_NORMAL_ULP[path]


@needs_long_double
@pytest.mark.parametrize("path", ["short", "wide"])
@pytest.mark.parametrize("lead, bound", [(0.0, F32_NORMAL_ULP), (15.0, F32_LEAD15_ULP)],
                         ids=["normal", "lead15"])
def test_float32_rows_within_ulps(path, lead, bound):
    """float32 N(0, 1) logits, random labels, the label's logit raised by 0 or 15 (20 000
    rows of 10, 64 and 100 classes, 2 000 of 1 000): loss within 1.5 ulp (N(0, 1)) and
    2.5 ulp (short rows) / 4.5 ulp (wide rows) when the label leads by 15. Short rows
    added all their terms in float one after another: 6.8 ulp there."""
    rng = np.random.default_rng(232)
    rows = [_normal_rows(rng, _n_rows(c), c, np.float32, lead) for c in SHORT_WIDE[path]]
    assert _max_loss_ulps(rows) <= bound[path]


@needs_long_double
def test_float32_torch_cancels_on_confident_rows():
    """PyTorch's float32 cross_entropy (log-softmax, then the label's entry) on 20 000 rows
    of 100 classes whose label leads by 15 is off by more than 10^5 ulp; fastxent by at most
    4.5 (test_float32_rows_within_ulps)."""
    torch = pytest.importorskip("torch")
    x, y = _normal_rows(np.random.default_rng(232), 20_000, 100, np.float32, 15.0)
    theirs = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y),
                                               reduction="none").numpy()
    assert _loss_ulps(x, y, theirs).max() > 1e5
