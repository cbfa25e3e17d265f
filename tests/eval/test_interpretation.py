"""The interpretation of ``fastxent.evaluate`` (issue 15): the intervals, baselines, loss
concentration and per-class, confusion and per-group tables of ``EvaluationResult``, against
independent float64 references computed here with NumPy, SciPy and scikit-learn from the
per-row values of ``eval_reference.reference_rows``.

Every case runs for float32 and float64 input, logits and probabilities; the tables also for a
class with no row, a class never predicted, groups with gaps, one-row groups and rows holding
NaN. The Evaluator's state is checked to add over chunks, to merge, to round-trip through strict
JSON, and not to depend on the thread count.
"""

import json
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastxent
from eval_reference import ratio_se, rows_for, spec_options, wilson
from helpers import BIG_ROWS, assert_close, same

DTYPES = (np.float32, np.float64)
# rtol against the float64 reference: float32 rows carry float32 rounding (the sums are
# float64); float64 input is float64 throughout
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}
Z95 = scipy.stats.norm.ppf(0.975)
TOPK = (1, 3)

# The documented loss histogram: bin 0 below 2**-64 nats, 16 bins per octave up to 2**64, one
# bin above.
HIST_EDGES = np.concatenate([[0.0], [math.ldexp(1.0 + j / 16, k) for k in range(-64, 64)
                                     for j in range(16)], [2.0**64, math.inf]])

# The options of each case: "s" draws sample weights (some of them 0), "w" class weights
SPECS = {
    "plain": {},
    "sample_weight": {"sample_weight": "s"},
    "class_weight": {"weight": "w"},
    "ignore_index": {"ignore_index": -100},
    "everything": {"weight": "w", "sample_weight": "s", "ignore_index": 1},
    "soft": {"soft": True},
    "soft_sample_weight": {"soft": True, "sample_weight": "s"},
}
LABEL_SPECS = [name for name, spec in SPECS.items() if not spec.get("soft")]


def make_case(seed, dtype, from_logits, spec, n_rows=400, n_classes=6, empty_class=None,
              unpredicted_class=None):
    """Inputs (logits or their softmax, of `dtype`), target and options as `spec` asks.

    Every fifth label is ``ignore_index`` when the spec has it; `empty_class` is no row's
    label; `unpredicted_class` has labels but its logit is 40 below the others (never the
    arg-max). Soft targets have zeros (entries below 0.1 dropped).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n_rows, n_classes))
    if unpredicted_class is not None:
        z[:, unpredicted_class] -= 40.0
    if from_logits:
        x = z
    else:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        x = e / e.sum(axis=1, keepdims=True)
    kw = spec_options(rng, spec, n_rows, n_classes)
    if spec.get("soft"):
        t = rng.uniform(0.0, 1.0, (n_rows, n_classes))
        t[t < 0.1] = 0.0
        target = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, n_classes, n_rows)
        if empty_class is not None:
            target[target == empty_class] = (empty_class + 1) % n_classes
        if "ignore_index" in kw:
            target[::5] = kw["ignore_index"]
    return x.astype(dtype), target, kw


def _ratio(numerator, denominator):
    return numerator / denominator if denominator != 0 else math.nan


def clip_bounds(dtype):
    """The clipping bounds [eps, 1 - eps] of probabilities of `dtype`, as floats."""
    dtype = np.dtype(dtype)
    eps = np.finfo(dtype).eps
    return float(dtype.type(eps)), float(dtype.type(1) - eps)


def expected_whole(rows, n_classes, topk, weight=None, prior=None, clip=None):
    """The interpretation's scalars of the counted rows `rows` (see reference_rows); `clip`
    the bounds of probabilities (None for logits)."""
    s, w_y = rows["s"], rows["w_y"]
    a, b = s * rows["loss"], s * w_y
    loss = _ratio(a.sum(), b.sum())
    se = ratio_se(a, b)
    total = s.sum()
    out = {"n_classes": n_classes, "loss": loss, "loss_bits": loss / math.log(2),
           "loss_se": se, "loss_ci": (loss - Z95 * se, loss + Z95 * se),
           "confidence": _ratio(np.sum(s * rows["confidence"]), total),
           "uniform_loss": math.log(n_classes)}
    if rows["y"] is not None:
        n_eff = total**2 / np.sum(s * s)
        accuracy = _ratio(np.sum(s * rows["correct"]), total)
        out["accuracy"] = accuracy
        out["accuracy_ci"] = wilson(accuracy, n_eff)
        out["topk_ci"] = {k: wilson(_ratio(np.sum(s * (rows["rank"] < k)), total), n_eff)
                          for k in topk}
        mass = np.bincount(rows["y"], weights=s, minlength=n_classes)
        out["target_entropy"] = out["kl"] = None
    else:
        mass = np.sum(s[:, None] * rows["t"], axis=0)
        t = rows["t"]
        h = scipy.stats.entropy(t, axis=1)
        q = rows["p"] if clip is None else np.clip(rows["p"], *clip)
        kl = np.sum(scipy.special.rel_entr(t, q), axis=1)
        out["target_entropy"] = _ratio(np.sum(s * h), total)
        out["kl"] = _ratio(np.sum(s * kl), total)
        out["accuracy_ci"] = out["topk_ci"] = None
    class_weight = np.ones(n_classes) if weight is None else np.asarray(weight, np.float64)
    pi = mass / mass.sum() if prior is None else np.asarray(prior, np.float64) / np.sum(prior)
    weighted = class_weight * mass
    used = weighted != 0
    out["prior_loss"] = float(np.sum(weighted[used] * -np.log(pi[used])) / weighted.sum())
    out["skill"] = 1.0 - loss / out["prior_loss"]
    return out


def assert_results_close(got, want, rtol, atol=0.0, where="result"):
    """Two EvaluationResults (or their to_dict()) equal up to `rtol` and `atol`: nested dicts
    and lists of numbers (NaN equals NaN), strings, None and ints compared exactly."""
    if isinstance(got, fastxent.EvaluationResult):
        assert got.count == want.count
        got, want = got.to_dict(), want.to_dict()
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_results_close(got[key], want[key], rtol, atol, f"{where}[{key!r}]")
    elif want is None or isinstance(want, (str, bool)):
        assert got == want, where
    elif isinstance(want, list) and want and isinstance(want[0], (list, dict)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_results_close(g, w, rtol, atol, f"{where}[{i}]")
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=where)


def check_scalar(got, want, rtol, what):
    if want is None:
        assert got is None, what
        return
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), (what, got)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            check_scalar(g, w, rtol, f"{what}[{i}]")
        return
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), (what, got)
        for key in want:
            check_scalar(got[key], want[key], rtol, f"{what}[{key}]")
        return
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-3, equal_nan=True,
                               err_msg=what)


def exact_worst_share(ce, mass, fraction):
    """The share of Σ mass * ce carried by the worst `fraction` of the mass (sorted exactly,
    the row the fraction ends in taken in part), and the documented bound on the histogram's
    error: the mass still needed in the boundary bin times that bin's width, over the total."""
    order = np.argsort(-ce, kind="stable")
    ce, mass = ce[order], mass[order]
    total = np.sum(mass * ce)
    needed = fraction * mass.sum()
    before = np.concatenate([[0.0], np.cumsum(mass)[:-1]])
    take = np.clip(needed - before, 0.0, mass)
    share = float(np.sum(take * ce) / total)
    last = int(np.searchsorted(np.cumsum(mass), needed, side="left"))
    b = int(np.searchsorted(HIST_EDGES, ce[min(last, len(ce) - 1)], side="right")) - 1
    above = np.sum(mass[ce >= HIST_EDGES[b + 1]])
    bound = (needed - above) * (HIST_EDGES[b + 1] - HIST_EDGES[b]) / total
    return share, float(bound)


# --------------------------------------------------------------------------------------------
# The whole's fields


@pytest.mark.parametrize("n_classes", [6, 70])        # short rows, and the row-by-row loop
@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_new_fields_match_the_reference(dtype, from_logits, spec_name, n_classes):
    spec = SPECS[spec_name]
    x, target, kw = make_case(11, dtype, from_logits, spec, n_classes=n_classes)
    r = fastxent.evaluate(x, target, from_logits=from_logits, topk=TOPK, **kw)
    rows = rows_for(x, target, kw, from_logits)
    want = expected_whole(rows, n_classes, TOPK, weight=kw.get("weight"),
                          clip=None if from_logits else clip_bounds(dtype))
    rtol = RTOL[np.dtype(dtype)]
    se_rtol = 10 * rtol
    for name, value in want.items():
        check_scalar(getattr(r, name), value,
                     se_rtol if name in ("loss_se", "loss_ci") else rtol, name)
    assert r.n_classes == n_classes and type(r.n_classes) is int
    assert r.count == int(rows["counted"].sum())
    assert r.prior_source == "seen"
    # the relations the docs state, on the result's own values
    assert r.loss_bits == pytest.approx(r.loss / math.log(2), rel=1e-15)
    assert r.loss_ci == pytest.approx((r.loss - 1.959964 * r.loss_se,
                                       r.loss + 1.959964 * r.loss_se), rel=1e-6)
    assert r.skill == pytest.approx(1.0 - r.loss / r.prior_loss, rel=1e-15)
    if rows["y"] is not None:
        assert set(r.topk_ci) == set(TOPK)
        assert r.topk_ci[1] == r.accuracy_ci
        for k in TOPK:
            low, high = r.topk_ci[k]
            assert 0.0 <= low <= r.topk[k] <= high <= 1.0
    else:
        assert r.kl == pytest.approx(r.loss - r.target_entropy, rel=1e-12, abs=1e-15)
        assert r.kl >= 0.0


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_unweighted_intervals_are_scipys(dtype, from_logits):
    """Without weights, loss_se is scipy.stats.sem of the rows' losses and the Wilson
    intervals are those of scipy.stats.binomtest."""
    x, y, _ = make_case(5, dtype, from_logits, {}, n_rows=777, n_classes=9)
    r = fastxent.evaluate(x, y, from_logits=from_logits, topk=(1, 2, 5))
    rows = rows_for(x, y, {}, from_logits)
    rtol = RTOL[np.dtype(dtype)]
    assert r.loss_se == pytest.approx(scipy.stats.sem(rows["ce"]), rel=10 * rtol)
    n = len(y)
    for k in (1, 2, 5):
        hits = int(np.sum(rows["rank"] < k))
        ci = scipy.stats.binomtest(hits, n).proportion_ci(method="wilson")
        assert r.topk_ci[k] == pytest.approx((ci.low, ci.high), rel=1e-12)
        assert r.topk[k] == hits / n
    assert r.accuracy_ci == r.topk_ci[1]


def test_equal_sample_weights_give_the_unweighted_intervals():
    """n_eff = (Σs)²/Σs² is n for equal weights: the same intervals as without weights."""
    x, y, _ = make_case(6, np.float64, True, {}, n_rows=300)
    plain = fastxent.evaluate(x, y, topk=(1, 2))
    scaled = fastxent.evaluate(x, y, topk=(1, 2), sample_weight=np.full(300, 2.5))
    assert scaled.accuracy_ci == pytest.approx(plain.accuracy_ci, rel=1e-12)
    assert scaled.topk_ci[2] == pytest.approx(plain.topk_ci[2], rel=1e-12)
    assert scaled.loss_se == pytest.approx(plain.loss_se, rel=1e-12)


def test_weighted_intervals_use_the_effective_count():
    """Weight 3 for half the rows, 1 for the others: n_eff = (Σs)²/Σs² < n widens the
    interval, exactly as Wilson's over n_eff."""
    x, y, _ = make_case(7, np.float64, True, {}, n_rows=400)
    s = np.where(np.arange(400) % 2 == 0, 1.0, 3.0)
    r = fastxent.evaluate(x, y, topk=(1,), sample_weight=s)
    n_eff = s.sum() ** 2 / np.sum(s * s)
    assert n_eff < 400
    rows = rows_for(x, y, {"sample_weight": s}, True)
    accuracy = np.sum(s * rows["correct"]) / s.sum()
    assert r.accuracy_ci == pytest.approx(wilson(accuracy, n_eff), rel=1e-12)
    unweighted_width = np.subtract(*wilson(accuracy, 400)[::-1])
    assert r.accuracy_ci[1] - r.accuracy_ci[0] > unweighted_width


def test_wilson_interval_at_the_edges():
    """All right and all wrong: Wilson's interval stays inside [0, 1] and is not degenerate."""
    x = np.array([[5.0, 0.0, 0.0]] * 20)
    right = fastxent.evaluate(x, np.zeros(20, int), topk=(1,))
    wrong = fastxent.evaluate(x, np.ones(20, int), topk=(1,))
    for r, hits in ((right, 20), (wrong, 0)):
        ci = scipy.stats.binomtest(hits, 20).proportion_ci(method="wilson")
        assert r.accuracy_ci == pytest.approx((ci.low, ci.high), rel=1e-12, abs=1e-15)
    assert right.accuracy_ci[1] == 1.0 and right.accuracy_ci[0] < 1.0
    assert wrong.accuracy_ci[0] == 0.0 and wrong.accuracy_ci[1] > 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_one_row_and_no_row(dtype):
    one = fastxent.evaluate(np.array([[1.0, 2.0, 0.5]], dtype), np.array([1]), topk=(1,))
    assert one.count == 1 and math.isfinite(one.loss)
    assert math.isnan(one.loss_se) and all(math.isnan(v) for v in one.loss_ci)
    assert one.accuracy == 1.0 and one.accuracy_ci[1] == 1.0 and one.accuracy_ci[0] > 0.0
    assert one.prior_loss == 0.0 and math.isnan(one.skill)   # a single class seen: no baseline
    none = fastxent.evaluate(np.zeros((4, 3), dtype), np.full(4, -1), ignore_index=-1,
                             topk=(1,))
    assert none.count == 0 and none.n_classes == 3
    for name in ("loss", "loss_bits", "loss_se", "confidence", "prior_loss", "skill",
                 "accuracy"):
        assert math.isnan(getattr(none, name)), name
    assert math.isnan(none.uniform_loss)           # no row: no metric, as the docs say
    assert all(math.isnan(v) for v in none.concentration.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_constant_loss_has_zero_spread(dtype):
    """Every row with the same loss: sem is 0, the interval is the point."""
    x = np.tile(np.array([[0.3, -1.2, 2.0, 0.0]], dtype), (50, 1))
    r = fastxent.evaluate(x, np.full(50, 2), topk=(1,))
    assert scipy.stats.sem(np.full(50, float(r.loss))) <= 1e-15 * r.loss
    assert r.loss_se == pytest.approx(0.0, abs=1e-6 * r.loss)
    assert r.loss_ci[0] == pytest.approx(r.loss, rel=1e-6)


def test_constant_loss_se_is_clamped_small():
    """The documented limit of the one-pass sums Σa², Σab, Σb²: rows of (nearly) equal loss
    get a loss_se that is not exactly scipy's 0, but small (about sqrt(eps) of the loss at
    most), never negative or NaN."""
    x = np.zeros((6, 3))
    x[:, 0] = 0.3
    r = fastxent.evaluate(x, np.zeros(6, np.int64), topk=(1,))
    assert scipy.stats.sem(np.full(6, r.loss)) <= 1e-15 * r.loss
    assert 0.0 <= r.loss_se <= 1e-7 * r.loss


# --------------------------------------------------------------------------------------------
# Baselines: uniform, prior (seen or given), skill; soft targets' entropy and KL


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_seen_prior_is_the_entropy_of_the_labels(dtype, from_logits):
    x, y, kw = make_case(21, dtype, from_logits, {"sample_weight": "s"}, n_rows=500)
    r = fastxent.evaluate(x, y, from_logits=from_logits, **kw)
    counts = np.bincount(y, weights=kw["sample_weight"], minlength=6)
    assert r.prior_loss == pytest.approx(scipy.stats.entropy(counts), rel=1e-12)
    assert r.uniform_loss == pytest.approx(math.log(6), rel=1e-15)
    assert r.prior_loss <= r.uniform_loss
    # the loss of predicting the label distribution for every row
    pi = counts / counts.sum()
    s = kw["sample_weight"]
    assert r.prior_loss == pytest.approx(np.sum(s * -np.log(pi[y])) / s.sum(), rel=1e-12)


def test_prior_with_class_weights_is_the_weighted_baseline_loss():
    """With class weights, prior_loss is the (class-weighted) loss of predicting the prior for
    every row: Σ_c w_c M_c (-log π_c) / Σ_c w_c M_c."""
    x, y, kw = make_case(22, np.float64, True, {"weight": "w", "sample_weight": "s"})
    w, s = kw["weight"], kw["sample_weight"]
    r = fastxent.evaluate(x, y, **kw)
    pi = np.bincount(y, weights=s, minlength=6) / s.sum()
    baseline = np.sum(s * w[y] * -np.log(pi[y])) / np.sum(s * w[y])
    assert r.prior_loss == pytest.approx(baseline, rel=1e-12)
    assert r.uniform_loss == pytest.approx(math.log(6), rel=1e-15)
    assert r.skill == pytest.approx(1.0 - r.loss / baseline, rel=1e-12)


@pytest.mark.parametrize("target_kind", ["labels", "soft"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_given_prior(dtype, target_kind):
    """prior= is divided by its sum; its loss is the cross-entropy of the seen distribution
    with it: Σ_c w_c M_c (-log π_c) / Σ_c w_c M_c."""
    spec = {"soft": True} if target_kind == "soft" else {"weight": "w"}
    x, target, kw = make_case(23, dtype, True, {**spec, "sample_weight": "s"})
    given = np.array([5.0, 1.0, 2.0, 0.5, 3.0, 1.5])
    r = fastxent.evaluate(x, target, prior=given, **kw)
    rows = rows_for(x, target, kw, True)
    want = expected_whole(rows, 6, (1, 5), weight=kw.get("weight"), prior=given)
    assert r.prior_source == "given"
    rtol = RTOL[np.dtype(dtype)]
    assert r.prior_loss == pytest.approx(want["prior_loss"], rel=rtol)
    assert r.skill == pytest.approx(want["skill"], rel=rtol)
    seen = fastxent.evaluate(x, target, **kw)
    assert seen.prior_source == "seen"
    assert r.prior_loss > seen.prior_loss          # cross-entropy >= entropy (Gibbs)
    # as probabilities or as counts: the same prior
    again = fastxent.evaluate(x, target, prior=given / given.sum() * 1e-3, **kw)
    assert again.prior_loss == pytest.approx(r.prior_loss, rel=1e-12)


def test_given_prior_with_a_zero_for_a_seen_class():
    """A class seen with prior 0: the baseline's loss is infinite (documented)."""
    x = np.zeros((6, 3))
    r = fastxent.evaluate(x, np.array([0, 1, 2, 0, 1, 2]), prior=[0.0, 1.0, 1.0])
    assert r.prior_loss == math.inf
    # a class never seen may have prior 0
    r = fastxent.evaluate(x, np.array([1, 1, 2, 1, 1, 2]), prior=[0.0, 2.0, 1.0])
    assert r.prior_loss == pytest.approx(-(4 * math.log(2 / 3) + 2 * math.log(1 / 3)) / 6,
                                         rel=1e-14)


@pytest.mark.parametrize("prior, fragment", [
    ([-1.0, 1.0, 1.0], "prior must be non-negative"),
    ([0.0, 0.0, 0.0], "prior must have a positive sum"),
    ([1.0, 1.0], "prior must have shape (3,)"),
    ([1.0, 1.0, 1.0, 1.0], "prior must have shape (3,)"),
    ([[1.0, 1.0, 1.0]], "prior must be 1-D"),
    ([math.nan, 1.0, 1.0], "prior must be finite"),
    ([math.inf, 1.0, 1.0], "prior must be finite"),
])
def test_prior_validation(prior, fragment):
    x, y = np.zeros((4, 3)), np.array([0, 1, 2, 0])
    with pytest.raises(ValueError) as info:
        fastxent.evaluate(x, y, prior=prior)
    assert fragment in str(info.value)
    with pytest.raises(ValueError, match="prior"):
        fastxent.Evaluator(prior=prior).update(x, y)


def test_wrong_prior_length_adds_nothing():
    ev = fastxent.Evaluator(prior=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"prior must have shape \(3,\) for 3 classes"):
        ev.update(np.zeros((4, 3)), np.array([0, 1, 2, 0]))
    assert ev.n_classes is None and ev.result().count == 0


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_soft_target_entropy_kl_and_prior(dtype, from_logits):
    x, t, kw = make_case(31, dtype, from_logits, {"soft": True, "sample_weight": "s"})
    r = fastxent.evaluate(x, t, from_logits=from_logits, **kw)
    s = kw["sample_weight"]
    t64 = t.astype(np.float64)
    rtol = RTOL[np.dtype(dtype)]
    target_entropy = np.sum(s * scipy.stats.entropy(t64, axis=1)) / s.sum()
    assert r.target_entropy == pytest.approx(target_entropy, rel=rtol)
    assert r.kl == pytest.approx(r.loss - r.target_entropy, rel=1e-12)
    mean_target = np.sum(s[:, None] * t64, axis=0) / s.sum()
    assert r.prior_loss == pytest.approx(scipy.stats.entropy(mean_target), rel=rtol)
    # the loss of predicting 1/6 for each class: log 6 times the targets' mean sum (1 to the
    # rounding of the targets' dtype)
    target_mass = np.sum(s[:, None] * t64) / s.sum()
    assert r.uniform_loss == pytest.approx(math.log(6) * target_mass, rel=1e-15)
    assert r.accuracy is None and r.accuracy_ci is None and r.topk_ci is None
    # a model that predicts the targets has no KL and the targets' entropy as its loss
    exact = (np.log(np.where(t64 > 0, t64, 1e-300)) if from_logits else t64).astype(dtype)
    perfect = fastxent.evaluate(exact, t, from_logits=from_logits, **kw)
    assert perfect.kl == pytest.approx(0.0, abs=1e-5 if dtype == np.float32 else 1e-12)


def test_labels_have_no_target_entropy():
    r = fastxent.evaluate(np.zeros((3, 2)), np.array([0, 1, 1]))
    assert r.target_entropy is None and r.kl is None


def _soft_weighted_case():
    rng = np.random.default_rng(41)
    x = rng.normal(0.0, 2.0, (300, 4))
    t = rng.dirichlet(np.ones(4), 300)
    w = np.array([0.5, 2.0, 1.0, 3.0])
    return x, t, w


def test_soft_kl_with_class_weights_is_loss_minus_target_entropy():
    """kl is loss - target_entropy; the docs say the split into entropy and KL is exact
    without class weights only: with them, kl is not the KL divergence."""
    x, t, w = _soft_weighted_case()
    p = scipy.special.softmax(x, axis=1)
    kl = np.mean(np.sum(scipy.special.rel_entr(t, p), axis=1))
    plain = fastxent.evaluate(x, t)
    assert plain.kl == pytest.approx(kl, rel=1e-12)
    weighted = fastxent.evaluate(x, t, weight=w)
    assert weighted.kl == pytest.approx(weighted.loss - weighted.target_entropy, rel=1e-14)
    assert weighted.target_entropy == plain.target_entropy
    assert weighted.kl != pytest.approx(kl, rel=1e-3)


def test_soft_baselines_with_class_weights_are_the_baseline_models_losses():
    x, t, w = _soft_weighted_case()
    pi = t.mean(axis=0)
    prior_model = fastxent.evaluate(np.tile(np.log(pi), (len(t), 1)), t, weight=w).loss
    uniform_model = fastxent.evaluate(np.zeros_like(x), t, weight=w).loss
    r = fastxent.evaluate(x, t, weight=w)
    assert r.prior_loss == pytest.approx(prior_model, rel=1e-9)
    assert r.uniform_loss == pytest.approx(uniform_model, rel=1e-9)


def test_labels_baselines_are_the_baseline_models_losses():
    """The same check with labels and class weights holds."""
    rng = np.random.default_rng(42)
    x, y = rng.normal(0.0, 2.0, (300, 4)), rng.integers(0, 4, 300)
    w, s = np.array([0.5, 2.0, 1.0, 3.0]), rng.uniform(0.1, 2.0, 300)
    pi = np.bincount(y, weights=s) / s.sum()
    r = fastxent.evaluate(x, y, weight=w, sample_weight=s)
    prior_model = fastxent.evaluate(np.tile(np.log(pi), (300, 1)), y, weight=w,
                                    sample_weight=s).loss
    uniform_model = fastxent.evaluate(np.zeros_like(x), y, weight=w, sample_weight=s).loss
    assert r.prior_loss == pytest.approx(prior_model, rel=1e-12)
    assert r.uniform_loss == pytest.approx(uniform_model, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Loss histogram and concentration


def _rows_with_losses(losses):
    """Two-class logit rows, label 0, whose cross-entropy is `losses` (float64)."""
    x = np.zeros((len(losses), 2))
    x[:, 1] = np.log(np.expm1(losses))           # log(1 + e^d) = loss
    return x, np.zeros(len(losses), dtype=np.int64)


@pytest.mark.parametrize("weighted", [False, True])
def test_concentration_against_the_exact_sorted_share(weighted):
    rng = np.random.default_rng(51)
    n = 20_000
    losses = rng.exponential(1.0, n) + 1e-3
    x, y = _rows_with_losses(losses)
    s = rng.uniform(0.0, 2.0, n) if weighted else None
    r = fastxent.evaluate(x, y, sample_weight=s, topk=(1,))
    ce = rows_for(x, y, {}, True)["ce"]
    np.testing.assert_allclose(ce, losses, rtol=1e-9)
    mass = np.ones(n) if s is None else s
    for fraction in (0.01, 0.1):
        share, bound = exact_worst_share(ce, mass, fraction)
        assert 0.0 < bound < 0.01
        assert abs(r.concentration[fraction] - share) <= bound + 1e-12, (fraction, share)
        assert r.loss_histogram.worst_share(fraction) == r.concentration[fraction]
    # an exponential's worst 10 % carry (1 + ln 10) / 10 of its mean loss ~ 0.33 (here the
    # +1e-3 shift lowers it slightly)
    assert r.concentration[0.1] == pytest.approx(0.1 * (1 + math.log(10)), abs=0.02)
    assert set(r.concentration) == {0.01, 0.1}


def test_concentration_of_equal_losses_is_the_fraction():
    """Equal losses: the worst 1 % and 10 % of rows carry 1 % and 10 % of the loss."""
    x = np.tile(np.array([[0.0, 1.0, -1.0]]), (1000, 1))
    r = fastxent.evaluate(x, np.full(1000, 2))
    assert r.concentration[0.01] == pytest.approx(0.01, rel=1e-12)
    assert r.concentration[0.1] == pytest.approx(0.1, rel=1e-12)
    # a few confidently wrong rows carry most of the loss: the worst 1 % carry it
    x[:10] = [50.0, 0.0, 0.0]
    y = np.full(1000, 1)
    r = fastxent.evaluate(x, y)
    ce = rows_for(x, y, {}, True)["ce"]
    assert ce[0] >= 50.0 and ce[0] * 10 > 0.5 * ce.sum()
    share, _ = exact_worst_share(ce, np.ones(1000), 0.01)
    assert r.concentration[0.01] == pytest.approx(share, rel=1e-12)
    assert r.concentration[0.1] == pytest.approx(exact_worst_share(ce, np.ones(1000), 0.1)[0],
                                                 rel=1e-12)


@pytest.mark.parametrize("spec_name", ["plain", "everything", "soft_sample_weight"])
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_loss_histogram_is_the_documented_binning(dtype, from_logits, spec_name):
    """Bins of 16 per octave from 2**-64 to 2**64; a row's mass is s * w[y], its loss the
    cross-entropy without class weights (labels); Σ mass * loss is the loss's numerator."""
    spec = SPECS[spec_name]
    x, target, kw = make_case(52, dtype, from_logits, spec, n_rows=2000, n_classes=7)
    r = fastxent.evaluate(x, target, from_logits=from_logits, **kw)
    h = r.loss_histogram
    np.testing.assert_array_equal(h.edges, HIST_EDGES)
    rows = rows_for(x, target, kw, from_logits)
    ce = rows["ce"] if rows["y"] is not None else rows["loss"]
    mass = rows["s"] * rows["w_y"]
    b = np.searchsorted(HIST_EDGES, ce, side="right") - 1
    rtol = RTOL[np.dtype(dtype)]
    want_mass = np.bincount(b, weights=mass, minlength=len(h.mass))
    want_loss = np.bincount(b, weights=mass * ce, minlength=len(h.mass))
    if dtype == np.float64:
        np.testing.assert_allclose(h.mass, want_mass, rtol=1e-12, atol=1e-12)
    else:
        # a float32 loss within rounding of an edge may fall on the other side of it
        assert h.mass.sum() == pytest.approx(want_mass.sum(), rel=1e-12)
        assert np.abs(h.mass - want_mass).sum() <= 0.01 * want_mass.sum()
    assert h.loss.sum() == pytest.approx(np.sum(rows["s"] * rows["loss"]), rel=rtol)
    assert h.loss.sum() / h.mass.sum() == pytest.approx(r.loss, rel=rtol)
    assert want_loss.sum() == pytest.approx(h.loss.sum(), rel=rtol)
    rows_fraction, loss_fraction = h.curve()
    assert rows_fraction[0] == loss_fraction[0] == 0.0
    assert rows_fraction[-1] == pytest.approx(1.0) and loss_fraction[-1] == pytest.approx(1.0)
    assert np.all(np.diff(loss_fraction) >= 0) and np.all(loss_fraction >= rows_fraction - 1e-12)


def test_tiny_and_huge_losses_fall_in_the_end_bins():
    x, y = _rows_with_losses(np.array([1e-25, 2.0**-65, 2.0**-64 * 1.01, 1.0]))
    # label 0 of logits (0, L): the loss is log(1 + e^L) = L (L >= 40)
    x = np.concatenate([x, [[0.0, 2.0**64 * 1.5], [0.0, 1e25]]])
    y = np.concatenate([y, [0, 0]])
    h = fastxent.evaluate(x, y).loss_histogram
    assert h.mass[0] == 2 and h.mass[1] == 1
    assert h.mass[-1] == 2 and h.loss[-1] == pytest.approx(2.0**64 * 1.5 + 1e25, rel=1e-12)
    assert h.mass[np.searchsorted(HIST_EDGES, 1.0, side="right") - 1] == 1


def test_negative_mass_makes_concentration_nan():
    rng = np.random.default_rng(53)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    s = np.ones(40)
    s[3] = -1.0
    r = fastxent.evaluate(x, y, sample_weight=s)
    assert math.isfinite(r.loss)
    assert all(math.isnan(v) for v in r.concentration.values())
    r = fastxent.evaluate(x, y, weight=[1.0, -0.5, 1.0])
    assert all(math.isnan(v) for v in r.concentration.values())


# --------------------------------------------------------------------------------------------
# Per-class table and confusion matrix


def expected_slice(rows, mask, topk):
    """The SliceTable metrics of the counted rows selected by `mask`."""
    s = rows["s"][mask]
    w = rows["w_y"][mask]
    total = s.sum()
    loss = _ratio(np.sum(s * rows["loss"][mask]), np.sum(s * w))
    out = {
        "count": int(mask.sum()), "weight_sum": float(total), "loss": loss,
        "loss_se": ratio_se(s * rows["loss"][mask], s * w),
        "perplexity": math.exp(loss) if math.isfinite(loss) else math.nan,
        "entropy": _ratio(np.sum(s * rows["entropy"][mask]), total),
        "brier": _ratio(np.sum(s * rows["brier"][mask]), total),
        "confidence": _ratio(np.sum(s * rows["confidence"][mask]), total),
    }
    if rows["y"] is not None:
        out["accuracy"] = _ratio(np.sum(s * rows["correct"][mask]), total)
        out["topk"] = {k: _ratio(np.sum(s * (rows["rank"][mask] < k)), total) for k in topk}
        out["calibration_gap"] = out["confidence"] - out["accuracy"]
    return out


def check_table(table, keys, expected, rtol, what):
    np.testing.assert_array_equal(table.keys, keys, err_msg=what)
    assert table.keys.dtype == np.int64 and table.count.dtype == np.int64
    assert len(table) == len(keys)
    for name in ("count", "weight_sum", "loss", "loss_se", "perplexity", "entropy", "brier",
                 "confidence", "accuracy", "calibration_gap"):
        want = [e.get(name) for e in expected]
        got = getattr(table, name)
        if want and want[0] is None:
            assert got is None, (what, name)
            continue
        if name == "count":
            np.testing.assert_array_equal(got, want, err_msg=f"{what}.{name}")
        elif name == "loss_se":
            # the one-pass sums Σa², Σab, Σb² cancel: about sqrt(eps) of the loss is the
            # floor of the SE of a slice with (nearly) equal losses (see
            # test_constant_loss_se_is_exactly_small)
            loss = np.abs([e["loss"] for e in expected])
            bad = ~(np.isclose(got, want, rtol=10 * rtol, atol=0.0, equal_nan=True)
                    | (np.abs(np.subtract(got, want)) <= 1e-7 * loss))
            assert not bad.any(), (what, name, np.asarray(got)[bad], np.asarray(want)[bad])
        else:
            assert_close(got, np.array(want, dtype=np.float64), np.float64, rtol=rtol,
                         what=f"{what}.{name}")
    if expected and "topk" in expected[0]:
        assert list(table.topk) == list(expected[0]["topk"])
        for k in table.topk:
            assert_close(table.topk[k], [e["topk"][k] for e in expected], np.float64, rtol=rtol,
                         what=f"{what}.topk[{k}]")
    elif expected:
        assert table.topk is None and table.accuracy is None and table.calibration_gap is None


@pytest.mark.parametrize("spec_name", LABEL_SPECS)
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_per_class_table_and_confusion(dtype, from_logits, spec_name):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    n_classes = 7
    x, y, kw = make_case(61, dtype, from_logits, SPECS[spec_name], n_rows=600,
                         n_classes=n_classes, empty_class=2, unpredicted_class=5)
    r = fastxent.evaluate(x, y, from_logits=from_logits, topk=TOPK, per_class=True,
                          confusion=True, **kw)
    rows = rows_for(x, y, kw, from_logits)
    yc, pred, s = rows["y"], rows["prediction"], rows["s"]
    keys = np.unique(yc)
    assert 2 not in keys and 5 in keys and 5 not in pred      # an empty, an unpredicted class
    rtol = RTOL[np.dtype(dtype)]
    expected = [expected_slice(rows, yc == c, TOPK) for c in keys]
    check_table(r.per_class, keys, expected, rtol, "per_class")
    # precision: of the rows predicted as the class, the weighted share labelled so
    want_precision = [_ratio(np.sum(s[(pred == c) & (yc == c)]), np.sum(s[pred == c]))
                      for c in keys]
    assert_close(r.per_class.precision, want_precision, np.float64, rtol=1e-12,
                 what="precision")
    assert math.isnan(r.per_class.precision[list(keys).index(5)])
    assert r.per_class.accuracy[list(keys).index(5)] == 0.0
    # scikit-learn's precision and recall, with zero_division=nan for the unpredicted class
    precision, recall, _, support = sklearn_metrics.precision_recall_fscore_support(
        yc, pred, labels=keys, sample_weight=s, zero_division=np.nan)
    np.testing.assert_allclose(r.per_class.precision, precision, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(r.per_class.accuracy, recall, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(r.per_class.weight_sum, support, rtol=1e-12)
    # the confusion matrix is scikit-learn's, over every class
    cm = sklearn_metrics.confusion_matrix(yc, pred, labels=np.arange(n_classes),
                                          sample_weight=s)
    assert r.confusion.shape == (n_classes, n_classes) and r.confusion.dtype == np.float64
    np.testing.assert_allclose(r.confusion, cm, rtol=1e-12, atol=1e-12)
    assert r.confusion.sum() == pytest.approx(r.weight_sum, rel=1e-12)
    np.testing.assert_allclose(r.confusion.sum(axis=1)[keys], r.per_class.weight_sum,
                               rtol=1e-12)
    assert np.all(r.confusion[2] == 0) and np.all(r.confusion[:, 5] == 0)
    if "ignore_index" in kw and 0 <= kw["ignore_index"] < n_classes:
        assert kw["ignore_index"] not in r.per_class.keys      # ignored label: no row


def test_per_class_weighted_mean_of_recall_is_accuracy():
    x, y, kw = make_case(62, np.float64, True, {"sample_weight": "s"}, n_rows=500)
    r = fastxent.evaluate(x, y, per_class=True, **kw)
    t = r.per_class
    assert np.sum(t.weight_sum * t.accuracy) / t.weight_sum.sum() == pytest.approx(r.accuracy,
                                                                                   rel=1e-12)
    assert t.count.sum() == r.count
    assert np.sum(t.weight_sum * t.confidence) / t.weight_sum.sum() == pytest.approx(
        r.confidence, rel=1e-12)


def test_per_class_with_a_zero_class_weight():
    """A class of weight 0 has no loss (0/0): NaN, while its other metrics are there."""
    x, y, _ = make_case(63, np.float64, True, {}, n_rows=200, n_classes=4)
    r = fastxent.evaluate(x, y, per_class=True, weight=[1.0, 0.0, 1.0, 2.0])
    i = list(r.per_class.keys).index(1)
    assert math.isnan(r.per_class.loss[i]) and math.isnan(r.per_class.loss_se[i])
    assert math.isfinite(r.per_class.accuracy[i]) and math.isfinite(r.per_class.brier[i])
    assert np.all(np.isfinite(np.delete(r.per_class.loss, i)))


@pytest.mark.parametrize("option", ["per_class", "confusion"])
def test_tables_need_labels(option):
    x = np.zeros((3, 4))
    t = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="per_class and confusion need integer class labels"):
        fastxent.evaluate(x, t, **{option: True})
    ev = fastxent.Evaluator(**{option: True})
    with pytest.raises(ValueError, match="need integer class labels"):
        ev.update(x, t)
    assert ev.n_classes is None and ev.target_kind is None


def test_confusion_class_limit():
    with pytest.raises(ValueError, match="at most 4096 classes, got 4097"):
        fastxent.evaluate(np.zeros((2, 4097), np.float32), np.array([0, 1]), confusion=True)
    r = fastxent.evaluate(np.zeros((2, 4097), np.float32), np.array([0, 1]), per_class=True)
    assert r.confusion is None and list(r.per_class.keys) == [0, 1]
    r = fastxent.evaluate(np.zeros((2, 4096), np.float32), np.array([4095, 1]),
                          confusion=True)
    assert r.confusion.shape == (4096, 4096)
    assert r.confusion[4095, 0] == 1.0 and r.confusion[1, 0] == 1.0 and r.confusion.sum() == 2


def test_no_tables_unless_asked():
    r = fastxent.evaluate(np.zeros((3, 4)), np.array([0, 1, 2]))
    assert r.per_class is None and r.confusion is None and r.groups is None


def test_per_class_and_groups_with_a_strided_class_axis():
    """Classes along axis 0 (the strided loop): the same tables as the transposed input."""
    x, y, kw = make_case(64, np.float64, True, {"sample_weight": "s", "weight": "w"},
                         n_rows=300, n_classes=5)
    groups = np.arange(300) % 4
    flat = fastxent.evaluate(x, y, per_class=True, confusion=True, groups=groups, **kw)
    strided = fastxent.evaluate(np.ascontiguousarray(x.T), y, axis=0, per_class=True,
                                confusion=True, groups=groups, **kw)
    assert_results_close(strided, flat, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# Groups


@pytest.mark.parametrize("spec_name", ["plain", "everything", "soft_sample_weight"])
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_group_table(dtype, from_logits, spec_name):
    spec = SPECS[spec_name]
    x, target, kw = make_case(71, dtype, from_logits, spec, n_rows=500, n_classes=5)
    rng = np.random.default_rng(72)
    groups = rng.choice([0, 3, 4, 9], size=500).astype(np.int32)
    groups[17] = 12                               # a group of one row
    if "ignore_index" in kw:
        groups[::5] = 7                           # only ignored rows: no counted row
    r = fastxent.evaluate(x, target, from_logits=from_logits, topk=TOPK, groups=groups, **kw)
    rows = rows_for(x, target, kw, from_logits)
    g = groups.reshape(-1)[rows["counted"]]
    keys = np.unique(g)
    assert 7 not in keys and 12 in keys and 1 not in keys      # unused ids are absent
    expected = [expected_slice(rows, g == key, TOPK) for key in keys]
    check_table(r.groups, keys, expected, RTOL[np.dtype(dtype)], "groups")
    assert r.groups.precision is None
    one = list(r.groups.keys).index(12)
    assert r.groups.count[one] == 1 and math.isnan(r.groups.loss_se[one])
    assert math.isfinite(r.groups.loss[one])
    assert r.groups.count.sum() == r.count


def test_groups_of_any_integer_dtype_and_row_shape():
    rng = np.random.default_rng(73)
    x = rng.normal(size=(4, 6, 3))
    y = rng.integers(0, 3, (4, 6))
    ids = rng.integers(0, 5, (4, 6))
    want = fastxent.evaluate(x, y, groups=ids.astype(np.int64))
    for dtype in (np.uint8, np.int16, np.uint32, np.int32):
        got = fastxent.evaluate(x, y, groups=ids.astype(dtype))
        assert same(got.to_dict(), want.to_dict()), dtype
    flat = fastxent.evaluate(x.reshape(24, 3), y.reshape(24), groups=ids.reshape(24))
    assert_results_close(want, flat, rtol=1e-15)
    assert fastxent.evaluate(x, y, groups=ids.tolist()).groups.keys.tolist() == \
        want.groups.keys.tolist()


@pytest.mark.parametrize("groups, error, fragment", [
    (np.array([0, -1, 0, 0]), ValueError, "groups[1] = -1: group ids must be ints in [0, "
                                          "16777215]"),
    (np.array([0, 0, 2**24, 0]), ValueError, "groups[2] = 16777216"),
    (np.array([0, 0, 0, 2**40]), ValueError, "groups[3] = 1099511627776"),
    (np.zeros(4, np.float64), TypeError, "groups must hold integer group ids, got dtype "
                                         "float64"),
    (np.zeros(4, bool), TypeError, "groups must hold integer group ids"),
    (np.zeros(3, np.int64), ValueError, "groups must have the rows' shape (4,), got (3,)"),
    (np.zeros((4, 1), np.int64), ValueError, "groups must have the rows' shape (4,), got "
                                             "(4, 1)"),
])
def test_groups_validation(groups, error, fragment):
    x, y = np.zeros((4, 3)), np.array([0, 1, 2, 0])
    with pytest.raises(error) as info:
        fastxent.evaluate(x, y, groups=groups)
    assert fragment in str(info.value)
    ev = fastxent.Evaluator()
    with pytest.raises(error, match="groups"):
        ev.update(x, y, groups=groups)
    assert ev.n_classes is None and ev.result().count == 0      # nothing was added


def test_groups_validation_names_the_index_of_a_multidimensional_row():
    x, y = np.zeros((2, 3, 4)), np.zeros((2, 3), np.int64)
    ids = np.zeros((2, 3), np.int64)
    ids[1, 2] = -5
    with pytest.raises(ValueError, match=r"groups\[1, 2\] = -5"):
        fastxent.evaluate(x, y, groups=ids)


def test_empty_chunk_with_groups():
    r = fastxent.evaluate(np.zeros((0, 3)), np.zeros(0, np.int64),
                          groups=np.zeros(0, np.int64))
    assert r.count == 0 and r.groups is None


# --------------------------------------------------------------------------------------------
# Rows holding NaN


@pytest.mark.parametrize("path", ["short", "rows", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_nan_row(dtype, path):
    """A NaN row makes the whole's metrics and its class's and group's NaN; the baselines
    (from the labels) stay; the other classes and groups, the confusion matrix and the loss
    histogram are those of the other rows; count and weight_sum still count it."""
    n_classes = 70 if path == "rows" else 5
    from_logits = path != "probs"
    x, y, kw = make_case(81, dtype, from_logits, {"sample_weight": "s"}, n_rows=300,
                         n_classes=n_classes)
    kw["sample_weight"] = kw["sample_weight"] + 0.5
    groups = np.arange(300) % 3
    bad = 10
    x[bad, 1] = np.nan
    # NaN is not in [0, 1]: probabilities holding NaN need validate=False
    options = dict(from_logits=from_logits, topk=TOPK, per_class=True, confusion=True,
                   validate=from_logits)
    r = fastxent.evaluate(x, y, groups=groups, **options, **kw)
    keep = np.arange(300) != bad
    clean = fastxent.evaluate(x[keep], y[keep], groups=groups[keep], **options,
                              sample_weight=kw["sample_weight"][keep])
    assert r.count == 300
    assert r.weight_sum == pytest.approx(np.sum(kw["sample_weight"]), rel=1e-12)
    for name in ("loss", "loss_bits", "loss_se", "perplexity", "accuracy", "confidence",
                 "entropy", "brier", "ece", "skill"):
        assert math.isnan(getattr(r, name)), name
    assert all(math.isnan(v) for v in r.loss_ci)
    assert all(math.isnan(v) for v in r.accuracy_ci)
    assert all(math.isnan(v) for ci in r.topk_ci.values() for v in ci)
    assert all(math.isnan(v) for v in r.concentration.values())
    assert r.uniform_loss == pytest.approx(math.log(n_classes), rel=1e-15)
    counts = np.bincount(y, weights=kw["sample_weight"], minlength=n_classes)
    assert r.prior_loss == pytest.approx(scipy.stats.entropy(counts), rel=1e-12)
    # the NaN row's class and group
    for table, key in ((r.per_class, y[bad]), (r.groups, groups[bad])):
        i = list(table.keys).index(key)
        for name in ("loss", "loss_se", "perplexity", "entropy", "brier", "confidence",
                     "accuracy", "calibration_gap"):
            assert math.isnan(getattr(table, name)[i]), name
        assert table.count[i] == np.sum((y if table is r.per_class else groups) == key)
    assert math.isnan(r.per_class.precision[list(r.per_class.keys).index(y[bad])])
    # everything else is the other rows'
    for mine, theirs in ((r.per_class, clean.per_class), (r.groups, clean.groups)):
        for i, key in enumerate(mine.keys):
            if key in (y[bad] if mine is r.per_class else groups[bad],):
                continue
            j = list(theirs.keys).index(key)
            for name in ("loss", "loss_se", "accuracy", "entropy", "brier", "confidence"):
                assert getattr(mine, name)[i] == pytest.approx(getattr(theirs, name)[j],
                                                               rel=1e-12, nan_ok=True), (name,
                                                                                         key)
            if mine.precision is not None:
                assert mine.precision[i] == pytest.approx(theirs.precision[j], rel=1e-12,
                                                          nan_ok=True)
    np.testing.assert_allclose(r.confusion, clean.confusion, rtol=1e-12)
    np.testing.assert_allclose(r.loss_histogram.mass, clean.loss_histogram.mass, rtol=1e-12)
    np.testing.assert_allclose(r.loss_histogram.loss, clean.loss_histogram.loss, rtol=1e-12)


def test_nan_row_with_soft_targets():
    x, t, kw = make_case(82, np.float64, True, {"soft": True}, n_rows=50)
    x[4, 0] = np.nan
    r = fastxent.evaluate(x, t)
    assert math.isnan(r.loss) and math.isnan(r.kl) and math.isnan(r.skill)
    # the targets have no NaN: their entropy and their mean distribution are still there
    assert r.target_entropy == pytest.approx(np.mean(scipy.stats.entropy(t, axis=1)),
                                             rel=1e-12)
    assert r.prior_loss == pytest.approx(scipy.stats.entropy(t.mean(axis=0)), rel=1e-12)


# --------------------------------------------------------------------------------------------
# The Evaluator's state: chunks, merge, JSON, threads


def _full_case(seed, dtype, n_rows=900, n_classes=6):
    x, y, kw = make_case(seed, dtype, True, SPECS["everything"], n_rows=n_rows,
                         n_classes=n_classes)
    rng = np.random.default_rng(seed + 1)
    groups = rng.integers(0, 8, n_rows)
    groups[-200:] += 20                          # larger ids only at the end
    return x, y, kw, groups


# a prior whose division by its sum is exact (see test_state_with_a_prior_round_trips)
OPTIONS = dict(topk=(1, 3), per_class=True, confusion=True, prior=[1.0, 2.0, 3.0, 4.0, 4.0,
                                                                        2.0])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_chunked_updates_equal_one_update(dtype):
    x, y, kw, groups = _full_case(91, dtype)
    s = kw.pop("sample_weight")
    ev_options = dict(OPTIONS, **kw)
    whole = fastxent.evaluate(x, y, sample_weight=s, groups=groups, **ev_options)
    ev = fastxent.Evaluator(**ev_options)
    bounds = [0, 1, 1, 150, 333, 700, 701, 900]          # an empty chunk, one-row chunks
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        ev.update(x[a:b], y[a:b], sample_weight=s[a:b], groups=groups[a:b])
    assert_results_close(ev.result(), whole, rtol=1e-12, atol=1e-15)
    assert len(whole.groups) == len(np.unique(groups)) and whole.groups.keys.max() >= 20


def test_group_table_grows_with_later_larger_ids():
    """Chunks whose ids grow (0-2, then up to 40): the table grows, and equals one pass; so do
    merges of an Evaluator with a shorter table into a longer one and the reverse."""
    rng = np.random.default_rng(92)
    x, y = rng.normal(size=(300, 4)), rng.integers(0, 4, 300)
    groups = np.concatenate([rng.integers(0, 3, 100), rng.integers(0, 10, 100),
                             rng.choice([5, 40], 100)])
    whole = fastxent.evaluate(x, y, groups=groups)
    ev = fastxent.Evaluator()
    lengths = []
    for a in (0, 100, 200):
        ev.update(x[a:a + 100], y[a:a + 100], groups=groups[a:a + 100])
        lengths.append(len(ev.result().groups))
        assert ev.result().groups.keys.max() == groups[:a + 100].max()
    assert lengths == [3, 10, 11]
    assert_results_close(ev.result(), whole, rtol=1e-12, atol=1e-15)
    low = fastxent.Evaluator().update(x[:150], y[:150], groups=groups[:150])
    high = fastxent.Evaluator().update(x[150:], y[150:], groups=groups[150:])
    assert_results_close(low.merge(high).result(), whole, rtol=1e-12, atol=1e-15)
    low = fastxent.Evaluator().update(x[:150], y[:150], groups=groups[:150])
    high = fastxent.Evaluator().update(x[150:], y[150:], groups=groups[150:])
    assert_results_close(high.merge(low).result(), whole, rtol=1e-12, atol=1e-15)
    # chunks without groups count in the whole but in no group
    mixed = fastxent.Evaluator().update(x[:100], y[:100], groups=groups[:100])
    mixed.update(x[100:], y[100:])
    assert mixed.result().count == 300 and mixed.result().groups.count.sum() == 100
    # an Evaluator updated without groups merges too: its rows are in no group
    plain = fastxent.Evaluator().update(x[:150], y[:150])
    merged = plain.merge(fastxent.Evaluator().update(x[150:], y[150:], groups=groups[150:]))
    assert merged.result().groups.count.sum() == 150 and merged.result().count == 300


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_merge_of_two_halves_equals_the_whole(dtype):
    x, y, kw, groups = _full_case(93, dtype)
    s = kw.pop("sample_weight")
    ev_options = dict(OPTIONS, **kw)
    whole = fastxent.evaluate(x, y, sample_weight=s, groups=groups, **ev_options)
    first = fastxent.Evaluator(**ev_options).update(x[:450], y[:450], s[:450], groups[:450])
    second = fastxent.Evaluator(**ev_options).update(x[450:], y[450:], s[450:], groups[450:])
    assert_results_close(first.merge(second).result(), whole, rtol=1e-12, atol=1e-15)


def test_merge_refuses_other_options():
    a = fastxent.Evaluator(per_class=True).update(np.zeros((2, 3)), np.array([0, 1]))
    for other in (fastxent.Evaluator(), fastxent.Evaluator(per_class=True, confusion=True),
                  fastxent.Evaluator(per_class=True, prior=[1, 1, 1])):
        with pytest.raises(ValueError, match="cannot merge Evaluators whose options differ"):
            a.merge(other)


def _json_round_trip(ev):
    text = json.dumps(ev.to_dict(), allow_nan=False)
    return fastxent.Evaluator.from_dict(json.loads(text))


@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_state_round_trips_through_strict_json(dtype, with_nan):
    x, y, kw, groups = _full_case(94, dtype)
    if with_nan:
        x[5, 2] = np.nan
    s = kw.pop("sample_weight")
    ev = fastxent.Evaluator(**OPTIONS, **kw).update(x[:600], y[:600], s[:600], groups[:600])
    restored = _json_round_trip(ev)
    assert restored.to_dict() == ev.to_dict()
    assert same(restored.result().to_dict(), ev.result().to_dict())
    assert restored.result().per_class is not None and restored.result().groups is not None
    np.testing.assert_array_equal(restored.result().confusion, ev.result().confusion)
    # and it goes on where it stopped: the same as never saved, bit for bit
    ev.update(x[600:], y[600:], s[600:], groups[600:])
    restored.update(x[600:], y[600:], s[600:], groups[600:])
    assert same(restored.result().to_dict(), ev.result().to_dict())


@pytest.mark.parametrize("target_kind", ["labels", "soft"])
def test_state_round_trip_soft_and_empty(target_kind):
    spec = {"soft": True} if target_kind == "soft" else {}
    x, t, _ = make_case(95, np.float64, True, spec, n_rows=40)
    ev = fastxent.Evaluator(prior=np.array([1.0, 2.0, 3.0, 4.0, 4.0, 2.0])).update(
        x, t, groups=np.arange(40) % 3)
    restored = _json_round_trip(ev)
    assert restored.to_dict() == ev.to_dict()
    assert same(restored.result().to_dict(), ev.result().to_dict())
    empty = fastxent.Evaluator(per_class=True, confusion=True)
    again = _json_round_trip(empty)
    assert again.to_dict() == empty.to_dict() and again.result().count == 0


def test_state_with_a_prior_round_trips():
    prior = np.arange(1.0, 7.0)
    x, y, _ = make_case(98, np.float64, True, {}, n_rows=40)
    ev = fastxent.Evaluator(prior=prior).update(x, y)
    restored = _json_round_trip(ev)
    assert restored.to_dict()["options"] == ev.to_dict()["options"]
    fastxent.Evaluator(prior=prior).merge(restored)


def test_evaluate_files_with_a_prior_resumes(tmp_path, monkeypatch):
    from helpers import StopRun, stop_after
    rng = np.random.default_rng(99)
    np.save(tmp_path / "logits.npy", rng.normal(size=(500, 6)).astype(np.float32))
    np.save(tmp_path / "labels.npy", rng.integers(0, 6, 500))
    args = (str(tmp_path / "logits.npy"), str(tmp_path / "labels.npy"))
    state = tmp_path / "state.json"
    prior = np.arange(1.0, 7.0)
    plain = fastxent.evaluate_files(*args, chunk_rows=100, prior=prior)
    with monkeypatch.context() as patch:
        stop_after(patch, 2)
        with pytest.raises(StopRun):
            fastxent.evaluate_files(*args, chunk_rows=100, prior=prior, checkpoint=state,
                                    checkpoint_interval=0)
    resumed = fastxent.evaluate_files(*args, chunk_rows=100, prior=prior, checkpoint=state)
    assert same(resumed.to_dict(), plain.to_dict())


def test_evaluate_files_tables_equal_evaluate(tmp_path):
    """groups=, per_class=, confusion=, prior= of evaluate_files: evaluate's tables."""
    x, y, kw = make_case(100, np.float32, True, {"ignore_index": -1}, n_rows=700)
    groups = np.random.default_rng(101).integers(0, 9, 700).astype(np.int16)
    for name, value in (("logits", x), ("labels", y), ("groups", groups)):
        np.save(tmp_path / f"{name}.npy", value)
    options = dict(OPTIONS, ignore_index=-1)
    got = fastxent.evaluate_files(str(tmp_path / "logits.npy"), str(tmp_path / "labels.npy"),
                                  groups=str(tmp_path / "groups.npy"), chunk_rows=64,
                                  **options)
    want = fastxent.evaluate(x, y, groups=groups, **options)
    assert_results_close(got, want, rtol=1e-12, atol=1e-15)
    assert got.prior_source == "given" and len(got.groups) == 9


def test_state_with_a_wrong_table_is_refused():
    ev = fastxent.Evaluator(per_class=True, confusion=True).update(
        np.zeros((3, 4)), np.array([0, 1, 2]), groups=np.array([0, 4, 2]))
    state = ev.to_dict()
    for name in ("class_table", "confusion", "group_table", "class_mass"):
        bad = json.loads(json.dumps(state))
        bad["tables"][name] = bad["tables"][name][:-1]
        with pytest.raises(ValueError, match=f"invalid Evaluator state: tables.{name} must "
                                             f"hold"):
            fastxent.Evaluator.from_dict(bad)
    bad = json.loads(json.dumps(state))
    bad["n_groups"] = 2**24 + 1
    with pytest.raises(ValueError, match="n_groups must be in"):
        fastxent.Evaluator.from_dict(bad)


@pytest.mark.parametrize("n_classes", [5, 70])
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_results_do_not_depend_on_the_thread_count(dtype, from_logits, n_classes):
    n_rows = BIG_ROWS if n_classes == 5 else 1000       # at least SERIAL_BELOW elements
    x, y, kw = make_case(96, dtype, from_logits, SPECS["everything"], n_rows=n_rows,
                         n_classes=n_classes)
    groups = np.random.default_rng(97).integers(0, 50, n_rows)
    options = dict(from_logits=from_logits, topk=(1, 3), per_class=True, confusion=True,
                   groups=groups, **kw)
    one = fastxent.evaluate(x, y, n_threads=1, **options)
    two = fastxent.evaluate(x, y, n_threads=2, **options)
    assert same(one.to_dict(), two.to_dict())
    np.testing.assert_array_equal(one.confusion, two.confusion)
