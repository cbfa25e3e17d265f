"""Property tests (hypothesis) for every public function.

Each example draws a shape (N = 0 and C = 1 included), a dtype, a memory layout (C order,
Fortran order, strided, reversed), the options, and values (with ±inf, NaN, ±1e30,
subnormals and signed zeros planted at drawn positions). Arrays are filled from a drawn seed,
so large inputs cost hypothesis nothing. Every example checks:

- against the independent float64 reference (``tests/reference.py``) wherever the input row
  is finite, at a tolerance of the computation dtype scaled by the row's weight and spread;
- ``loss_and_grad`` equals ``loss`` and ``grad`` separately, bitwise;
- in place (``out=input``) and into a caller's ``out`` equal out of place, bitwise;
- the per-sample losses sum to ``reduction="sum"`` and ``"mean"`` is that sum over its
  denominator (close: the sum is accumulated in float64);
- ``n_threads=1`` and ``n_threads=2`` give bitwise identical results, reductions included
  (inputs above ``SERIAL_BELOW`` elements are drawn often enough that two threads run);
- the inputs, targets and weights are not written to;
- documented special values (NaN rows, ``logsumexp`` of infinite rows, binary ±inf logits).

``FASTXENT_HYPOTHESIS_EXAMPLES`` sets the number of examples per test (default 60).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import fastxent
from fastxent._core.threads import SERIAL_BELOW
from helpers import check_result_types
from reference import binary_cross_entropy_ref, cross_entropy_ref

EXAMPLES = int(os.environ.get("FASTXENT_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# inputs above SERIAL_BELOW elements cost ~50x more: a third of the examples
BIG_SETTINGS = settings(SETTINGS, max_examples=max(EXAMPLES // 3, 10))

RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
REDUCTIONS = ("none", "sum", "mean")
LAYOUTS = ("C", "C", "F", "strided", "reversed")

# planted values; the finite ones keep the reference comparison
SPECIAL_LOGITS = (np.inf, -np.inf, np.nan, 1e30, -1e30, 1e-40, -1e-40, 5e-324, 0.0, -0.0,
                  88.0, -104.0, 710.0, -745.0)
# smoothing below float32's resolution would make the target weight 0 in float32 against an
# exact 0 probability with eps=0 (0/0); weights that small are out of scope here
SMOOTHING = st.floats(0, 1).filter(lambda e: e == 0 or e > 1e-30)
SPECIAL_PROBS = (0.0, 1.0, 1e-40, 5e-324, 1e-45, 0.5, 1.0 - 2**-24, 1.0 - 2**-53, 2**-24)


# ---- comparison helpers -------------------------------------------------------------------


def same(a, b, what=""):
    """Bitwise equality (NaN payloads aside): same dtype, shape, values and signs of zero."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (what, a.dtype, b.dtype)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert np.array_equal(nan_a, nan_b), (what, "NaN positions differ")
    ok = ~nan_a
    assert np.array_equal(a[ok], b[ok]), (what, a[ok][a[ok] != b[ok]][:5],
                                          b[ok][a[ok] != b[ok]][:5])
    assert np.array_equal(np.signbit(a[ok]), np.signbit(b[ok])), (what, "signed zeros differ")


def close(got, expected, tol, mask=None, what=""):
    """``|got - expected| <= tol`` where `expected` is finite (and `mask`); equal where it is
    ±inf. NaN in `expected` is not compared (the reference's ``0 * inf``)."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), expected.shape)
    mask = np.ones(expected.shape, bool) if mask is None else np.broadcast_to(mask,
                                                                             expected.shape)
    # within a factor 64 of float32's largest value (or inf) any value of the same sign
    # beyond that bound passes: the kernels may overflow in an intermediate (``y / p``
    # before the mean's 1/N) for subnormal probabilities with eps=0, or not, where the exact
    # value is near the limit; out of scope here
    huge = float(np.finfo(np.float32).max) / 64
    fin = mask & np.isfinite(expected) & (np.abs(expected) <= huge)
    with np.errstate(invalid="ignore"):
        bad = fin & ~(np.abs(got - expected) <= tol)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise AssertionError(f"{what}: {int(bad.sum())} of {int(fin.sum())} differ; first at "
                             f"{tuple(i)}: got {got[tuple(i)]!r}, expected "
                             f"{expected[tuple(i)]!r}, tol {tol[tuple(i)]!r}")
    inf = mask & (np.abs(expected) > huge)
    ok = (np.sign(got[inf]) == np.sign(expected[inf])) & (np.abs(got[inf]) > huge)
    assert np.all(ok), (what, "infinite values differ", got[inf][~ok][:5],
                        expected[inf][~ok][:5])


def rounded(results, dtype):
    """The reference's results rounded to the computation dtype (float32 overflows to inf)."""
    with np.errstate(over="ignore"):
        return [np.asarray(r, np.float64).astype(dtype).astype(np.float64) for r in results]


def unchanged(arrays, copies):
    for a, c in zip(arrays, copies, strict=True):
        if isinstance(a, np.ndarray):
            same(a, c, "an input was written to")


# ---- data ---------------------------------------------------------------------------------


def relayout(arr, layout):
    """`arr`'s values in another memory layout (a view into a fresh buffer)."""
    arr = np.asarray(arr)
    if arr.ndim == 0 or layout == "C":
        return np.array(arr, order="C", copy=True)
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "strided":                       # every other element of the last axis
        buf = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
        buf[..., ::2] = arr
        return buf[..., ::2]
    if layout == "reversed":                      # negative strides on the first axis
        return np.array(arr[::-1], copy=True)[::-1]
    raise ValueError(layout)


@st.composite
def plantings(draw, specials, max_count=6):
    """A list of (position fraction, value) to plant into a flat array."""
    return draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(specials)),
                         max_size=max_count))


def plant(flat, planted):
    for frac, value in planted:
        if flat.size:
            flat[int(frac * flat.size)] = value


def values(rng, shape, dtype, scale, planted):
    x = (scale * rng.standard_normal(shape)).astype(dtype)
    with np.errstate(over="ignore"):
        plant(x.reshape(-1), [(f, dtype.type(v)) for f, v in planted])
    return x


def probs(rng, shape, dtype, axis, normalised, planted):
    if normalised and len(shape):
        p = rng.uniform(0.0, 1.0, size=shape)
        p /= np.maximum(p.sum(axis=axis, keepdims=True), 1e-300)
    else:
        p = rng.uniform(0.0, 1.0, size=shape)
    p = np.clip(p, 0.0, 1.0).astype(dtype)
    plant(p.reshape(-1), [(f, dtype.type(v)) for f, v in planted])
    return np.clip(p, 0, 1)


def _no_subnormal_unclipped(x, eps):
    """With eps=0 a float32 subnormal probability is not clipped and ``y / p`` overflows
    in float32 (``0 * inf`` = NaN against a zero weight) where the float64 reference stays
    finite: out of scope (docs/reliability.md), so such values become exact zeros."""
    if eps == 0.0 and x.dtype == np.float32:
        return np.where(np.abs(x) < np.finfo(np.float32).smallest_normal, np.float32(0), x)
    return x


@st.composite
def shapes(draw, min_dims=1, big=False):
    """A shape and a class axis. `big` asks for at least SERIAL_BELOW elements."""
    ndim = draw(st.integers(min_dims, 3))
    if ndim == 0:
        return (), 0
    axis = draw(st.integers(-ndim, ndim - 1))
    n_classes = draw(st.sampled_from([1, 2, 3, 5, 8, 17, 64, 65, 130]))
    dims = [draw(st.one_of(st.integers(0, 4), st.integers(0, 40), st.sampled_from([127, 129,
                                                                                  260])))
            for _ in range(ndim)]
    dims[axis] = n_classes
    rest = int(np.prod(dims)) // n_classes
    if big:
        need = -(-SERIAL_BELOW // n_classes)
        extra = draw(st.integers(0, 3000))
        other = [i for i in range(ndim) if i != axis % ndim]
        if other:
            dims[other[0]] = need + extra
            for i in other[1:]:
                dims[i] = 1 + (dims[i] % 3)
        else:
            dims[axis] = SERIAL_BELOW + extra
    elif rest * n_classes > 20000:               # keep the default run fast
        for i in range(ndim):
            if i != axis % ndim:
                dims[i] = min(dims[i], 3)
    return tuple(dims), axis


def _layout_of(draw):
    return draw(st.sampled_from(LAYOUTS))


# ---- multiclass ---------------------------------------------------------------------------


@st.composite
def multiclass_problems(draw, big=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape, axis = draw(shapes(big=big))
    dtype = draw(st.sampled_from(FLOATS))
    n_classes = shape[axis]
    rows_shape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    from_logits = draw(st.booleans())
    soft = draw(st.booleans())
    if from_logits:
        scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 4.0, 40.0]))
        x = values(rng, shape, dtype, scale, draw(plantings(SPECIAL_LOGITS)))
    else:
        x = probs(rng, shape, dtype, axis, draw(st.booleans()), draw(plantings(SPECIAL_PROBS)))
    kw = {"from_logits": from_logits, "axis": axis}
    if draw(st.booleans()) and axis == len(shape) - 1:
        kw.pop("axis")
    if soft:
        t = probs(rng, shape, draw(st.sampled_from(FLOATS)), axis, draw(st.booleans()),
                  draw(plantings(SPECIAL_PROBS[:3])))
    else:
        label_dtype = draw(st.sampled_from([np.int8, np.uint8, np.int16, np.int32, np.int64,
                                            np.uint64]))
        if np.iinfo(label_dtype).max < n_classes:
            label_dtype = np.int64
        t = rng.integers(0, n_classes, size=rows_shape).astype(label_dtype)
        ignore = draw(st.sampled_from([None, None, -100, 0]))
        if ignore is not None and (ignore >= 0 or np.iinfo(label_dtype).min < 0):
            kw["ignore_index"] = ignore
            if t.size:
                mask = rng.uniform(size=t.shape) < draw(st.sampled_from([0.0, 0.3, 1.0]))
                t = np.where(mask, label_dtype(ignore) if ignore >= 0 else ignore, t)
                t = np.asarray(t, dtype=label_dtype)
    if draw(st.booleans()):
        w = rng.uniform(0.0, 3.0, size=n_classes)
        w[rng.uniform(size=n_classes) < 0.2] = 0.0
        kw["weight"] = relayout(w.astype(draw(st.sampled_from([np.float64, np.float32]))),
                                _layout_of(draw))
    if draw(st.booleans()):
        s = rng.uniform(0.0, 2.0, size=rows_shape)
        if s.ndim:
            s[rng.uniform(size=rows_shape) < 0.1] = 0.0
        kw["sample_weight"] = relayout(s, _layout_of(draw))
    kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]) | SMOOTHING)
    if not from_logits:
        kw["eps"] = draw(st.sampled_from([None, None, 0.0, 1e-7, 1e-3, 0.25]))
        x = _no_subnormal_unclipped(x, kw["eps"])
    x = relayout(x, _layout_of(draw))
    t = relayout(t, _layout_of(draw))
    note(f"shape={shape} axis={axis} dtype={dtype} soft={soft} kw keys={sorted(kw)} "
         f"x strides={x.strides}")
    return x, t, kw


def _mc_rows(arr, axis, n_classes):
    return np.moveaxis(np.asarray(arr, dtype=np.float64), axis, -1).reshape(-1, n_classes)


def _mc_mass(x, t, kw):
    """Per row: an upper bound on the summed target weight ``sum_c a_rc``."""
    axis = kw.get("axis", -1)
    n_classes = x.shape[axis]
    n_rows = x.size // n_classes
    s = np.ones(n_rows) if "sample_weight" not in kw else np.abs(
        np.asarray(kw["sample_weight"], np.float64).reshape(-1))
    wmax = 1.0 if "weight" not in kw else float(np.max(kw["weight"]))
    if t.dtype.kind == "f":
        tsum = _mc_rows(t, axis, n_classes).sum(axis=1) if n_rows else np.zeros(0)
        return s * wmax * (tsum + 1.0)
    return s * wmax


def check_multiclass_reference(x, t, kw, results):
    """Compare with the float64 reference on the rows whose inputs are all finite."""
    dtype = np.dtype(x.dtype)
    rtol = RTOL[dtype]
    axis = kw.get("axis", -1)
    n_classes = x.shape[axis]
    rows = _mc_rows(x, axis, n_classes)
    finite_rows = np.all(np.isfinite(rows), axis=1)
    if kw["from_logits"] and rows.size:
        # the reference's m + log(sum) rounds at |m| (1e30 + log 2 == 1e30): rows with
        # logits that large are checked by the invariants only
        finite_rows &= np.max(np.abs(np.where(finite_rows[:, None], rows, 0)), axis=1) < 1e9
    mass = _mc_mass(x, t, kw)
    if kw["from_logits"] and rows.size:
        fr = np.where(np.isfinite(rows), rows, 0.0)
        spread = fr.max(axis=1) - fr.min(axis=1)
    else:
        spread = np.zeros(rows.shape[0])
    loss_scale = mass * (1.0 + spread)
    for reduction in REDUCTIONS:
        t_seen = t.astype(dtype) if t.dtype.kind == "f" else t   # soft targets: cast
        ref_loss, ref_grad = rounded(cross_entropy_ref(x, t_seen, reduction=reduction, **kw),
                                     dtype)
        loss, grad = results[reduction]
        g_rows = _mc_rows(grad, axis, n_classes)
        r_rows = _mc_rows(ref_grad, axis, n_classes)
        close(g_rows, r_rows, rtol * (np.abs(r_rows) + mass[:, None]),
              mask=finite_rows[:, None], what=f"grad {reduction}")
        if reduction == "none":
            close(np.reshape(loss, -1), np.reshape(ref_loss, -1),
                  rtol * (np.abs(np.reshape(ref_loss, -1)) + loss_scale), mask=finite_rows,
                  what="per-row loss")
        elif finite_rows.all():
            _, den = _denominator(x, t, kw)
            tol = rtol * (abs(ref_loss) + float(np.sum(loss_scale)) / (
                den if reduction == "mean" and den else 1.0))
            if np.isfinite(ref_loss) or np.isinf(ref_loss):
                close(loss, ref_loss, tol, what=f"loss {reduction}")


def _denominator(x, t, kw):
    """(None, mean's denominator), computed from the options as the README states it."""
    axis = kw.get("axis", -1)
    n_classes = x.shape[axis]
    n_rows = x.size // n_classes
    s = (np.ones(n_rows) if "sample_weight" not in kw
         else np.asarray(kw["sample_weight"], np.float64).reshape(-1))
    if t.dtype.kind == "f":
        return None, float(np.sum(s))
    y = np.asarray(t).reshape(-1).astype(np.int64)
    w = np.ones(n_classes) if "weight" not in kw else np.asarray(kw["weight"], np.float64)
    counted = np.ones(n_rows, bool) if "ignore_index" not in kw else y != kw["ignore_index"]
    yc = np.where(counted, y, 0)
    return None, float(np.sum((s * w[yc])[counted]))


def run_family(funcs, x, t, kw, n_threads=1):
    """Every reduction through loss, grad and loss_and_grad; check they agree bitwise."""
    loss_fn, grad_fn, both_fn = funcs
    results = {}
    for reduction in REDUCTIONS:
        k = dict(kw, reduction=reduction, n_threads=n_threads)
        loss = loss_fn(x, t, **k)
        grad = grad_fn(x, t, **k)
        both = both_fn(x, t, **k)
        same(loss, both[0], f"loss vs loss_and_grad ({reduction})")
        same(grad, both[1], f"grad vs loss_and_grad ({reduction})")
        results[reduction] = both
    return results


def check_reductions(results, denominator, dtype, mass):
    """sum(per-sample) == "sum" (float64 accumulation), "mean" == "sum" / denominator, and the
    gradients of "none" and "sum" agree; "mean"'s is "sum"'s over the denominator (up to
    rounding on the scale of `mass`, the target weight behind each gradient element)."""
    none, g_none = results["none"]
    total, g_sum = results["sum"]
    mean, g_mean = results["mean"]
    per = np.asarray(none, np.float64)
    # float64: the kernel's plain block sums vs NumPy's pairwise sum, ~n eps apart at worst
    rtol = 1e-6 if dtype == np.float32 else max(1e-13, 2.3e-16 * per.size)
    # a result in the subnormal range is rounded to a fixed spacing, not to rtol
    tiny = float(np.finfo(dtype).smallest_subnormal)
    if np.all(np.isfinite(per)):
        ref = float(np.sum(per))
        tol = rtol * float(np.sum(np.abs(per))) + tiny
        assert abs(float(total) - ref) <= tol, ("sum of per-sample losses", total, ref)
        if denominator:
            assert abs(float(mean) - float(total) / denominator) <= (
                tol / denominator + rtol * abs(float(total) / denominator) + tiny), (
                "mean", mean, total, denominator)
    elif np.any(np.isnan(per)):
        assert np.isnan(total), ("a NaN per-sample loss but a non-NaN sum", total)
    if denominator == 0:
        assert np.isnan(mean), ("mean over nothing", mean)
        finite = np.isfinite(g_sum)
        assert not np.any(g_mean[finite]), "mean over nothing: the gradient is 0"
    same(g_none, g_sum, "grad none vs sum")
    if denominator:
        with np.errstate(over="ignore", invalid="ignore"):
            close(g_mean, np.asarray(g_sum, np.float64) / denominator,
                  # the kernel's denominator is a plain float64 sum (~1e-14 relative at
                  # 32k rows), not NumPy's pairwise one
                  (8 * np.finfo(dtype).eps + max(1e-13, 2.3e-16 * np.size(g_sum)))
                  * (np.abs(np.asarray(g_sum, np.float64)) + mass) / denominator + 1e-300,
                  mask=np.isfinite(g_sum),
                  what="mean grad vs sum grad / denominator")


def check_out_and_in_place(funcs, x, t, kw, results, with_threads=True):
    """out=buffer and out=input (in place) give the out-of-place results bitwise;
    n_threads=2 gives the n_threads=1 results bitwise."""
    _, grad_fn, both_fn = funcs
    cdt = results["mean"][1].dtype
    for reduction in REDUCTIONS:
        loss, grad = results[reduction]
        k = dict(kw, reduction=reduction, n_threads=1)
        out = np.full(grad.shape, -7.25, cdt)
        l2, g2 = both_fn(x, t, out=out, **k)
        assert g2 is out
        same(l2, loss, f"loss with out= ({reduction})")
        same(g2, grad, f"grad with out= ({reduction})")
        xc = np.array(x, dtype=cdt, order="C", copy=True)
        l3, g3 = both_fn(xc, t, out=xc, **k)
        assert g3 is xc
        same(l3, loss, f"in-place loss ({reduction})")
        same(g3, grad, f"in-place grad ({reduction})")
        xc = np.array(x, dtype=cdt, order="C", copy=True)
        g4 = grad_fn(xc, t, out=xc, **k)
        same(g4, grad, f"in-place grad_fn ({reduction})")
        if with_threads:
            l5, g5 = both_fn(x, t, **dict(k, n_threads=2))
            same(l5, loss, f"loss, 2 threads ({reduction})")
            same(g5, grad, f"grad, 2 threads ({reduction})")


MULTICLASS = (fastxent.cross_entropy, fastxent.cross_entropy_grad,
              fastxent.cross_entropy_loss_and_grad)
BINARY = (fastxent.binary_cross_entropy, fastxent.binary_cross_entropy_grad,
          fastxent.binary_cross_entropy_loss_and_grad)


def _copies(*arrays):
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in arrays]


def check_multiclass(x, t, kw, reference=True):
    inputs = [x, t, kw.get("weight"), kw.get("sample_weight")]
    before = _copies(*inputs)
    results = run_family(MULTICLASS, x, t, kw)
    unchanged(inputs, before)
    cdt = np.dtype(x.dtype)
    axis = kw.get("axis", -1)
    rows_shape = tuple(np.delete(np.array(x.shape, dtype=np.int64), axis % x.ndim))
    for reduction in REDUCTIONS:
        check_result_types(*results[reduction], x.shape, rows_shape, reduction, cdt)
    _, den = _denominator(x, t, kw)
    n_classes = x.shape[axis]
    mass = np.moveaxis(np.broadcast_to(_mc_mass(x, t, kw).reshape(rows_shape + (1,)),
                                       rows_shape + (n_classes,)), -1, axis)
    check_reductions(results, den, cdt, mass)
    check_out_and_in_place(MULTICLASS, x, t, kw, results)
    unchanged(inputs, before)
    if reference:
        check_multiclass_reference(x, t, kw, results)
    check_multiclass_nan_rows(x, t, kw, results)
    return results


def check_multiclass_nan_rows(x, t, kw, results):
    """README: NaN anywhere in a row of logits makes that row's loss and gradient NaN (for a
    counted row with positive target weight on every class)."""
    if not kw["from_logits"] or t.dtype.kind == "f" or set(kw) & {"weight", "sample_weight",
                                                                   "ignore_index"}:
        return
    axis = kw.get("axis", -1)
    n_classes = x.shape[axis]
    rows = _mc_rows(x, axis, n_classes)
    nan_rows = np.isnan(rows).any(axis=1)
    if not nan_rows.any():
        return
    none, g_none = results["none"]
    assert np.all(np.isnan(np.reshape(none, -1)[nan_rows])), "NaN row: loss not NaN"
    g = _mc_rows(g_none, axis, n_classes)
    assert np.all(np.isnan(g[nan_rows])), "NaN row: gradient not NaN"
    assert np.isnan(results["sum"][0]) and np.isnan(results["mean"][0])


@SETTINGS
@given(multiclass_problems())
def test_cross_entropy_properties(problem):
    """cross_entropy, _grad, _loss_and_grad: reference, invariants, special values."""
    x, t, kw = problem
    check_multiclass(x, t, kw)


@BIG_SETTINGS
@given(multiclass_problems(big=True))
def test_cross_entropy_big_threads(problem):
    """Inputs of SERIAL_BELOW elements and more: two threads run; bitwise equal to one."""
    x, t, kw = problem
    check_multiclass(x, t, kw, reference=True)


# ---- binary -------------------------------------------------------------------------------


@st.composite
def binary_problems(draw, big=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if big:
        last = draw(st.sampled_from([1, 3, 64, 100, 513]))
        shape = (-(-SERIAL_BELOW // last) + draw(st.integers(0, 500)), last)
    else:
        ndim = draw(st.integers(0, 3))
        shape = tuple(draw(st.one_of(st.integers(0, 5), st.sampled_from([17, 63, 64, 65, 130])))
                      for _ in range(ndim))
        if int(np.prod(shape)) > 20000:
            shape = tuple(min(d, 3) for d in shape[:-1]) + shape[-1:]
    dtype = draw(st.sampled_from(FLOATS))
    from_logits = draw(st.booleans())
    if from_logits:
        scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 4.0, 40.0]))
        x = values(rng, shape, dtype, scale, draw(plantings(SPECIAL_LOGITS)))
    else:
        x = probs(rng, shape, dtype, -1, False, draw(plantings(SPECIAL_PROBS)))
    kw = {"from_logits": from_logits}
    tkind = draw(st.sampled_from(["uniform", "binary", "int", "bool", "float32"]))
    if tkind == "uniform":
        t = rng.uniform(size=shape)
    elif tkind == "float32":
        t = rng.uniform(size=shape).astype(np.float32)
    else:
        t = (rng.uniform(size=shape) < 0.5).astype(
            {"binary": np.float64, "int": np.int8, "bool": np.bool_}[tkind])
    ignore = draw(st.sampled_from([None, None, -1.0, 0.0, 0.5]))
    if ignore is not None and tkind in ("uniform", "binary", "int"):
        kw["ignore_index"] = ignore
        frac = draw(st.sampled_from([0.0, 0.3, 1.0]))
        t = np.where(rng.uniform(size=shape) < frac, ignore, t).astype(t.dtype)
        if np.any(t != np.asarray(t, np.float64)):
            kw.pop("ignore_index")
    nd = len(shape)
    wkind = draw(st.sampled_from(["none", "scalar", "full", "col", "row", "first", "int"]))
    if wkind == "scalar":
        kw["weight"] = float(rng.uniform(0, 3))
    elif wkind == "full":
        kw["weight"] = relayout(rng.uniform(0, 3, size=shape), _layout_of(draw))
    elif wkind == "col" and nd:
        kw["weight"] = relayout(rng.uniform(0, 3, size=shape[-1:]), _layout_of(draw))
    elif wkind == "row" and nd:
        kw["weight"] = relayout(rng.uniform(0, 3, size=shape[:-1] + (1,)), _layout_of(draw))
    elif wkind == "first" and nd >= 2:
        kw["weight"] = rng.uniform(0, 3, size=shape[:1] + (1,) * (nd - 1))
    elif wkind == "int" and nd:
        kw["weight"] = rng.integers(0, 3, size=shape[-1:])
    pkind = draw(st.sampled_from(["none", "scalar", "col", "full"]))
    if pkind == "scalar":
        kw["pos_weight"] = np.float32(rng.uniform(0, 4))
    elif pkind == "col" and nd:
        kw["pos_weight"] = relayout(rng.uniform(0, 4, size=shape[-1:]), _layout_of(draw))
    elif pkind == "full":
        kw["pos_weight"] = rng.uniform(0, 4, size=shape)
    kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]) | SMOOTHING)
    if not from_logits:
        kw["eps"] = draw(st.sampled_from([None, None, 0.0, 1e-7, 1e-3, 0.25]))
        x = _no_subnormal_unclipped(x, kw["eps"])
    x = relayout(x, _layout_of(draw))
    t = relayout(t, _layout_of(draw))
    note(f"shape={shape} dtype={dtype} target={tkind} weight={wkind} pos_weight={pkind} "
         f"kw keys={sorted(kw)}")
    return x, t, kw


def check_binary_reference(x, t, kw, results):
    dtype = np.dtype(x.dtype)
    rtol = RTOL[dtype]
    x64 = np.asarray(x, np.float64)
    finite = np.isfinite(x64)
    w = np.abs(np.broadcast_to(np.asarray(kw.get("weight", 1.0), np.float64), x.shape))
    pw = np.broadcast_to(np.asarray(kw.get("pos_weight", 1.0), np.float64), x.shape)
    mass = w * np.maximum(pw, 1.0)
    loss_scale = mass * (1.0 + (np.where(finite, np.abs(x64), 0.0) if kw["from_logits"]
                                else 0.0))
    for reduction in REDUCTIONS:
        # the target as the kernel sees it: cast to the input's dtype
        ref_loss, ref_grad = rounded(binary_cross_entropy_ref(
            x, np.asarray(t).astype(dtype), reduction=reduction, **kw), dtype)
        loss, grad = results[reduction]
        close(grad, ref_grad, rtol * (np.abs(ref_grad) + mass), mask=finite,
              what=f"grad {reduction}")
        if reduction == "none":
            close(loss, ref_loss, rtol * (np.abs(ref_loss) + loss_scale), mask=finite,
                  what="elementwise loss")
        elif finite.all():
            den = _binary_count(t, kw) if reduction == "mean" else 1
            tol = rtol * (abs(ref_loss) + float(np.sum(loss_scale)) / (den or 1))
            close(loss, ref_loss, tol, what=f"loss {reduction}")


def _binary_count(t, kw):
    t = np.asarray(t, np.float64)
    if "ignore_index" not in kw:
        return t.size
    return int(np.count_nonzero(t != kw["ignore_index"]))


def check_binary_special(x, t, kw, results):
    """README: binary logits of ±inf give the limit, 0 when the label agrees, +inf when not."""
    if not kw["from_logits"] or set(kw) & {"weight", "pos_weight", "ignore_index"} or \
            kw["label_smoothing"] != 0:
        return
    x64, t64 = np.asarray(x, np.float64), np.asarray(t, np.float64)
    loss = np.asarray(results["none"][0], np.float64)
    agree = ((x64 == np.inf) & (t64 == 1)) | ((x64 == -np.inf) & (t64 == 0))
    disagree = ((x64 == np.inf) & (t64 == 0)) | ((x64 == -np.inf) & (t64 == 1))
    assert np.all(loss[agree] == 0), loss[agree]
    assert np.all(loss[disagree] == np.inf), loss[disagree]
    nan = np.isnan(x64)
    assert np.all(np.isnan(loss[nan])), "NaN logit: loss not NaN"


def check_binary(x, t, kw, reference=True):
    inputs = [x, t, kw.get("weight"), kw.get("pos_weight")]
    before = _copies(*inputs)
    results = run_family(BINARY, x, t, kw)
    unchanged(inputs, before)
    cdt = np.dtype(x.dtype)
    for reduction in REDUCTIONS:
        check_result_types(*results[reduction], x.shape, x.shape, reduction, cdt)
    mass = (np.abs(np.broadcast_to(np.asarray(kw.get("weight", 1.0), np.float64), x.shape))
            * np.maximum(np.broadcast_to(np.asarray(kw.get("pos_weight", 1.0), np.float64),
                                         x.shape), 1.0))
    check_reductions(results, _binary_count(t, kw), cdt, mass)
    if x.ndim:
        check_out_and_in_place(BINARY, x, t, kw, results)
    unchanged(inputs, before)
    if reference:
        check_binary_reference(x, t, kw, results)
    check_binary_special(x, t, kw, results)


@SETTINGS
@given(binary_problems())
def test_binary_cross_entropy_properties(problem):
    """binary_cross_entropy, _grad, _loss_and_grad: reference, invariants, special values."""
    x, t, kw = problem
    check_binary(x, t, kw)


@BIG_SETTINGS
@given(binary_problems(big=True))
def test_binary_cross_entropy_big_threads(problem):
    """Binary inputs above SERIAL_BELOW elements: bitwise identical for 1 and 2 threads."""
    x, t, kw = problem
    check_binary(x, t, kw)


# ---- softmax, log_softmax, logsumexp ------------------------------------------------------


@st.composite
def softmax_problems(draw, big=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape, axis = draw(shapes(big=big))
    dtype = draw(st.sampled_from(FLOATS))
    scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 4.0, 40.0]))
    x = values(rng, shape, dtype, scale, draw(plantings(SPECIAL_LOGITS)))
    x = relayout(x, _layout_of(draw))
    if draw(st.booleans()) and axis == len(shape) - 1:
        axis = None
    note(f"shape={shape} axis={axis} dtype={dtype} strides={x.strides}")
    return x, axis


def _lse_ref(rows):
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        m = rows.max(axis=1, keepdims=True) if rows.size else np.zeros((rows.shape[0], 1))
        return (m + np.log(np.sum(np.exp(rows - m), axis=1, keepdims=True)))[:, 0]


def check_softmax_family(x, axis, reference=True):
    kw = {} if axis is None else {"axis": axis}
    ax = -1 if axis is None else axis
    before = np.array(x, copy=True)
    cdt = np.dtype(x.dtype)
    n_classes = x.shape[ax]
    rows_shape = tuple(np.delete(np.array(x.shape, dtype=np.int64), ax % x.ndim))
    outs = {}
    for name, fn in (("softmax", fastxent.softmax), ("log_softmax", fastxent.log_softmax),
                     ("logsumexp", fastxent.logsumexp)):
        r1 = fn(x, n_threads=1, **kw)
        unchanged([x], [before])
        assert r1.dtype == cdt
        assert r1.shape == (rows_shape if name == "logsumexp" else x.shape), (name, r1.shape)
        same(fn(x, n_threads=2, **kw), r1, f"{name}: 2 threads")
        same(fn(x, **kw), r1, f"{name}: default threads")
        out = np.full(r1.shape, -3.5, cdt)
        assert fn(x, out=out, n_threads=1, **kw) is out
        same(out, r1, f"{name}: out=")
        if name != "logsumexp":
            xc = np.array(x, dtype=cdt, order="C", copy=True)
            assert fn(xc, out=xc, **kw) is xc
            same(xc, r1, f"{name}: in place")
        outs[name] = r1
    rows = _mc_rows(x, ax, n_classes)
    lse = outs["logsumexp"].reshape(-1)
    # README: a row whose largest value is +-inf gives +-inf; NaN rows give NaN
    nan_rows = np.isnan(rows).any(axis=1)
    assert np.all(np.isnan(lse[nan_rows])), "logsumexp of a NaN row"
    if rows.size:
        rmax = np.where(nan_rows, 0.0, rows.max(axis=1))
        inf_rows = ~nan_rows & np.isinf(rmax)
        assert np.array_equal(lse[inf_rows], rmax[inf_rows]), "logsumexp of an infinite row"
    if not reference:
        return
    rtol = RTOL[cdt]
    finite = np.all(np.isfinite(rows), axis=1)
    if rows.size:                      # as for cross_entropy: the reference rounds at |m|
        finite &= np.max(np.abs(np.where(finite[:, None], rows, 0)), axis=1) < 1e9
    ref_lse = _lse_ref(rows)
    close(lse, ref_lse, rtol * (np.abs(ref_lse) + 1.0), mask=finite, what="logsumexp")
    with np.errstate(invalid="ignore"):
        ref_log = rows - ref_lse[:, None]
    got_log = _mc_rows(outs["log_softmax"], ax, n_classes)
    close(got_log, ref_log, rtol * (np.abs(ref_log) + 1.0), mask=finite[:, None],
          what="log_softmax")
    got_p = _mc_rows(outs["softmax"], ax, n_classes)
    ref_p = np.exp(ref_log)
    close(got_p, ref_p, rtol * ref_p + np.finfo(cdt).smallest_normal, mask=finite[:, None],
          what="softmax")
    if got_p.size:
        s = np.sum(got_p[finite], axis=1)
        assert np.all(np.abs(s - 1.0) <= n_classes * 4 * np.finfo(cdt).eps + 1e-12), s


@SETTINGS
@given(softmax_problems())
def test_softmax_family_properties(problem):
    """softmax, log_softmax, logsumexp: reference, out=, in place, threads, special rows."""
    check_softmax_family(*problem)


@BIG_SETTINGS
@given(softmax_problems(big=True))
def test_softmax_family_big_threads(problem):
    """softmax family above SERIAL_BELOW elements: bitwise identical for 1 and 2 threads."""
    check_softmax_family(*problem, reference=False)


# ---- effective_n_threads, config ----------------------------------------------------------


@SETTINGS
@given(st.one_of(st.none(), st.integers(-1000, 1000).filter(lambda n: n != 0)))
def test_effective_n_threads_property(n):
    """None: the default; positive: that many (OpenMP); negative counts back; never < 1."""
    got = fastxent.effective_n_threads(n)
    assert isinstance(got, int) and got >= 1
    cores = fastxent.effective_n_threads()
    if not fastxent.config()["openmp"]:
        assert got == 1
    elif n is None:
        assert got == cores
    elif n > 0:
        assert got == n
    else:
        assert got == max(1, cores + 1 + n)


@SETTINGS
@given(st.one_of(st.just(0), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3),
                 st.just(0.0)))
def test_effective_n_threads_rejects(n):
    """0 is a ValueError; anything not an int (bool, float, str) a TypeError."""
    with pytest.raises((ValueError, TypeError), match="n_threads"):
        fastxent.effective_n_threads(n)


def test_config_and_show_config(capsys):
    """config() is a dict of plain values; show_config prints every key."""
    cfg = fastxent.config()
    assert isinstance(cfg, dict)
    fastxent.show_config()
    printed = capsys.readouterr().out
    for key in cfg:
        assert key in printed


# ---- bugs found by the property tests and the sanitizers (now regression tests) -----------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_probability_loss_independent_of_grad(dtype):
    """binary_cross_entropy(...) == binary_cross_entropy_loss_and_grad(...)[0], bitwise, for
    probabilities (found by test_binary_cross_entropy_properties).

    Failed on the AVX2 build (passed with FASTXENT_ISA=baseline): the loss-only and the
    loss+grad variants of fx_bce's probability loop rounded differently (FMA contraction or
    vector vs scalar log, likely), so the loss depended on whether the gradient was asked for."""
    x = np.array([0.6977362], dtype)
    t = np.array([0.31381427])
    kw = {"from_logits": False, "pos_weight": 0.4847884, "reduction": "none"}
    same(fastxent.binary_cross_entropy(x, t, **kw),
         fastxent.binary_cross_entropy_loss_and_grad(x, t, **kw)[0], "one element")
    rng = np.random.default_rng(0)
    x = rng.uniform(0.01, 0.99, 1000).astype(dtype)
    t = rng.uniform(size=1000)
    for reduction in ("none", "sum"):
        kw = {"from_logits": False, "reduction": reduction}
        same(fastxent.binary_cross_entropy(x, t, **kw),
             fastxent.binary_cross_entropy_loss_and_grad(x, t, **kw)[0], reduction)


@pytest.mark.parametrize("case", ["probabilities", "wide_rows", "strided_rows"])
def test_ignored_row_label_not_used_as_weight_index(case):
    """An ignored row's label (ignore_index, any int) must not index the class weights.

    Found by AddressSanitizer (scripts/sanitize.sh): ``_class_rows`` in _kernels.pxi reads
    ``w[y]`` for every row before checking ``y == ignore_index``, a heap out-of-bounds read
    for ignore_index=-100, and a segmentation fault for ignore_index=-2**60. Run in a child
    process so that the crash fails this test instead of killing the suite."""
    import subprocess
    import sys
    code = {
        "probabilities": "x = np.full((2, 3), 1 / 3); kw = dict(from_logits=False)",
        "wide_rows": "x = np.zeros((2, 70)); kw = {}",
        "strided_rows": "x = np.zeros((2, 3, 2)); kw = dict(axis=1)",
    }[case]
    script = (
        "import numpy as np, fastxent\n" + code + "\n"
        "y = np.zeros(x.shape[:1] + x.shape[2:], np.int64); y.reshape(-1)[-1] = -2**60\n"
        "w = np.ones(x.shape[1 if kw.get('axis') == 1 else -1])\n"
        "loss = fastxent.cross_entropy(x, y, weight=w, ignore_index=-2**60, **kw)\n"
        "print(float(loss))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert np.isfinite(float(proc.stdout.split()[-1]))


@pytest.mark.parametrize("x", [[1e30, -5.2841945, 25.616905], [1e7, 0.3]],
                         ids=["gap_1e30", "gap_1e7"])
def test_float32_softmax_far_below_max_is_zero(x):
    """float32: exp(z - m) for z - m below about -104 is 0 (found by
    test_softmax_family_properties). With |m| >= ~1e7 the float32 rounding carry of z - m
    gives tiny non-zero, even negative, probabilities: softmax([1e30, -5.28, 25.6]) is
    [1, -7.0e-45, 1.35e-39] (float64: [1, 0, 0]); the cross-entropy gradient likewise."""
    x = np.array(x, np.float32)
    p = fastxent.softmax(x)
    assert np.all(p >= 0), p
    np.testing.assert_array_equal(p, [1.0] + [0.0] * (x.size - 1))
    g = fastxent.cross_entropy_grad(x[None, :], np.array([0]))
    np.testing.assert_array_equal(g, np.zeros_like(g))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_class_nan_row(dtype):
    """A NaN in a row of one class: logsumexp is NaN and softmax NaN, as for wider rows and
    as log_softmax and cross_entropy already give (found by test_softmax_family_properties):
    logsumexp([nan]) is -inf and softmax([nan]) is [1.]."""
    x = np.array([np.nan], dtype)
    assert np.isnan(fastxent.log_softmax(x)).all()
    assert np.isnan(fastxent.logsumexp(x))
    assert np.isnan(fastxent.softmax(x)).all()
    assert np.isnan(fastxent.logsumexp(np.array([[np.nan], [1.0]], dtype))[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_logsumexp_nan_beats_inf(dtype):
    """A row with NaN and +inf: logsumexp is NaN (as NumPy/SciPy give, and as the NaN rule
    for cross_entropy rows); fastxent returns inf and softmax gives [nan, nan]."""
    assert np.isnan(fastxent.logsumexp(np.array([np.nan, np.inf], dtype)))
    assert np.isnan(fastxent.logsumexp(np.array([np.inf, np.nan], dtype)))
