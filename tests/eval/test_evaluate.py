"""fastxent.evaluate, EvaluationResult, CalibrationBins and Evaluator against the float64 NumPy
reference in ``eval_reference.py`` (written from docs/evaluation.md) and against hand-worked
numbers."""

import dataclasses
import itertools
import json
import math
import zlib

import numpy as np
import pytest

import fastxent
from eval_reference import EDGES, confidence_of, rank_counting, rank_stable, reference_evaluate
from fastxent._core.dispatch import kernels
from helpers import labels, logits, probabilities, soft_targets

KEYS = {"loss", "perplexity", "accuracy", "topk", "entropy", "brier", "ece", "ece_bins",
        "count", "weight_sum", "n_classes", "loss_bits", "loss_se", "loss_ci", "accuracy_ci",
        "topk_ci", "confidence", "uniform_loss", "prior_loss", "prior_source", "skill",
        "target_entropy", "kl", "concentration", "loss_histogram", "per_class", "confusion",
        "groups"}
# the scalar fields of the interpretation (None where they do not apply)
INTERPRETATION_FLOATS = ("loss_bits", "loss_se", "confidence", "uniform_loss", "prior_loss",
                         "skill", "target_entropy", "kl")
HISTOGRAM_KEYS = {"edges", "mass", "loss"}
BIN_KEYS = {"edges", "weight", "confidence", "accuracy"}
FLOAT_METRICS = ("loss", "perplexity", "entropy", "brier", "ece")

# (rtol, atol) for the float metrics against the reference
TOL = {np.dtype(np.float64): (1e-12, 1e-14), np.dtype(np.float32): (2e-5, 1e-6)}
# confidences closer than this to an internal bin edge are moved away in the random data, so
# that a float32 kernel and the float64 reference put every row in the same bin
EDGE_MARGIN = {np.dtype(np.float64): 1e-11, np.dtype(np.float32): 1e-5}
LABEL_DTYPES = ("int8", "uint8", "int32", "int64")
NAN = float("nan")


def _seed(*parts):
    return zlib.crc32(repr(parts).encode())


# ---------------------------------------------------------------------------------------------
# comparison helpers


def plain(result):
    """``result.to_dict()`` checked for its keys, topk keys as ints, bins as float64 arrays;
    also checks that the attributes say the same as the dict."""
    assert isinstance(result, fastxent.EvaluationResult)
    d = result.to_dict()
    assert set(d) == KEYS, sorted(d)
    out = dict(d)
    if d["topk"] is not None:
        out["topk"] = {int(k): float(v) for k, v in d["topk"].items()}
        assert list(out["topk"]) == sorted(out["topk"])
    if d["ece_bins"] is not None:
        assert set(d["ece_bins"]) == BIN_KEYS
        for k, v in d["ece_bins"].items():
            assert isinstance(v, list), (k, type(v))
        out["ece_bins"] = {k: np.asarray(v, dtype=np.float64) for k, v in d["ece_bins"].items()}
    # attributes
    for key in ("loss", "perplexity", "accuracy", "entropy", "brier", "ece", "weight_sum",
                *INTERPRETATION_FLOATS):
        a, b = getattr(result, key), d[key]
        assert (a is None) == (b is None), key
        if a is not None:
            assert _same(float(a), float(b)), (key, a, b)
    assert int(result.count) == int(d["count"]) == d["count"]
    assert result.n_classes == d["n_classes"]
    assert d["n_classes"] is None or type(d["n_classes"]) is int
    assert result.prior_source == d["prior_source"] and d["prior_source"] in ("seen", "given")
    # intervals: tuples as attributes, lists in the dict
    assert isinstance(result.loss_ci, tuple) and len(result.loss_ci) == 2
    assert isinstance(d["loss_ci"], list) and _same_floats(d["loss_ci"], result.loss_ci)
    assert (d["accuracy_ci"] is None) == (d["accuracy"] is None)
    assert (d["topk_ci"] is None) == (d["topk"] is None)
    if d["accuracy_ci"] is not None:
        assert isinstance(result.accuracy_ci, tuple) and len(result.accuracy_ci) == 2
        assert isinstance(d["accuracy_ci"], list)
        assert _same_floats(d["accuracy_ci"], result.accuracy_ci)
        assert sorted(int(k) for k in d["topk_ci"]) == sorted(out["topk"])
        out["topk_ci"] = {int(k): v for k, v in d["topk_ci"].items()}
        for k, v in result.topk_ci.items():
            assert isinstance(v, tuple) and _same_floats(out["topk_ci"][int(k)], v), (k, v)
    assert set(d["concentration"]) == set(result.concentration) == {0.01, 0.1}
    assert _same_floats([d["concentration"][q] for q in (0.01, 0.1)],
                        [result.concentration[q] for q in (0.01, 0.1)])
    assert isinstance(result.loss_histogram, fastxent.LossHistogram)
    assert set(d["loss_histogram"]) == HISTOGRAM_KEYS
    for k in HISTOGRAM_KEYS:
        np.testing.assert_array_equal(np.asarray(getattr(result.loss_histogram, k)),
                                      np.asarray(d["loss_histogram"][k]), err_msg=k)
    if d["topk"] is None:
        assert result.topk is None
    else:
        assert sorted(int(k) for k in result.topk) == list(out["topk"])
        for k, v in result.topk.items():
            assert _same(float(v), out["topk"][int(k)]), (k, v)
    if d["ece_bins"] is None:
        assert result.ece_bins is None
    else:
        bins = result.ece_bins
        assert isinstance(bins, fastxent.CalibrationBins)
        for k in BIN_KEYS:
            np.testing.assert_array_equal(np.asarray(getattr(bins, k), np.float64),
                                          out["ece_bins"][k], err_msg=k)
    return out


def _same(a, b):
    """Float equality, NaN equal to NaN and the sign of zero counted."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _same_floats(a, b):
    """Two sequences of floats equal by ``_same``."""
    return len(a) == len(b) and all(_same(float(u), float(v)) for u, v in zip(a, b, strict=True))


def assert_identical(a, b, path="result"):
    """Bitwise (NaN-aware) equality of two to_dict() trees."""
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        assert {str(k) for k in a} == {str(k) for k in b}, path
        bk = {str(k): k for k in b}
        for k in a:
            assert_identical(a[k], b[bk[str(k)]], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)) and not all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in a):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_identical(u, v, f"{path}[{i}]")
    elif isinstance(a, (list, tuple, np.ndarray)):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape, path
        assert a.tobytes() == b.tobytes() or (
            np.array_equal(a, b, equal_nan=True)
            and np.array_equal(np.signbit(a), np.signbit(b))), (path, a, b)
    elif a is None:
        assert b is None, path
    elif isinstance(a, (str, bool, np.bool_)):
        assert type(a) is type(b) and a == b, (path, a, b)
    elif isinstance(a, (bool, int, np.integer)) and not isinstance(a, float):
        assert int(a) == int(b), (path, a, b)
    else:
        assert _same(float(a), float(b)), (path, a, b)


def _close(got, exp, rtol, atol, what):
    assert (got is None) == (exp is None), what
    if got is None:
        return
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(exp, np.float64),
                               rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def _nan_or_approx(got, expected, what, rel=1e-15):
    """`got` is NaN where `expected` is, else equal to it up to `rel` (infinities equal)."""
    if math.isnan(expected):
        assert math.isnan(got), (what, got, expected)
    else:
        assert got == pytest.approx(expected, rel=rel, abs=0), (what, got, expected)


def check_interpretation(d):
    """The interpretation's fields against the metrics they derive from: loss_bits = loss /
    ln 2; loss_ci around loss; accuracy_ci around accuracy, in [0, 1]; uniform_loss = log C
    with labels (soft targets: log C times the targets' weighted mass, test_interpretation);
    skill = 1 - loss / prior_loss; soft targets: kl = loss - target_entropy (labels: both
    None); the worst 1 % of rows carry no more of the loss than the worst 10 %."""
    loss = d["loss"]
    _nan_or_approx(d["loss_bits"], loss / math.log(2), "loss_bits")
    low, high = d["loss_ci"]
    if math.isfinite(loss) and math.isfinite(d["loss_se"]):
        assert d["loss_se"] >= 0.0
        assert low <= loss <= high
        assert (low + high) / 2 == pytest.approx(loss, rel=1e-12, abs=1e-15)
    else:
        assert math.isnan(low) and math.isnan(high), d["loss_ci"]
    if d["accuracy"] is not None and math.isfinite(d["accuracy"]) \
            and not math.isnan(d["accuracy_ci"][0]):
        low, high = d["accuracy_ci"]
        assert 0.0 <= low <= d["accuracy"] + 1e-15 and d["accuracy"] - 1e-15 <= high <= 1.0
    if d["n_classes"] is None:
        assert d["count"] == 0
    if (d["n_classes"] is not None and not math.isnan(d["uniform_loss"])
            and d["accuracy"] is not None):        # labels: log C, whatever the weights
        assert d["uniform_loss"] == pytest.approx(math.log(d["n_classes"]), rel=1e-14,
                                                  abs=1e-15)
    if d["prior_loss"] > 0:
        _nan_or_approx(d["skill"], 1.0 - loss / d["prior_loss"], "skill")
    if d["accuracy"] is None:              # soft targets
        assert d["target_entropy"] is not None
        _nan_or_approx(d["kl"], loss - d["target_entropy"], "kl")
    else:
        assert d["target_entropy"] is None and d["kl"] is None
    c1, c10 = d["concentration"][0.01], d["concentration"][0.1]
    assert math.isnan(c1) == math.isnan(c10)
    if not math.isnan(c1):
        assert 0.0 <= c1 <= c10 + 1e-12 and c10 <= 1.0 + 1e-12, (c1, c10)


def check_invariants(d):
    """perplexity = exp(loss); topk[1] = accuracy; topk non-decreasing in k, in [0, 1];
    bin weights add up to weight_sum; the interpretation's fields (check_interpretation)."""
    check_interpretation(d)
    loss, ppl = d["loss"], d["perplexity"]
    if math.isnan(loss):
        assert math.isnan(ppl)
    else:
        with np.errstate(over="ignore"):
            expected = float(np.exp(loss))
        assert ppl == pytest.approx(expected, rel=1e-15, abs=0), (ppl, loss)
    if d["topk"] is not None:
        vals = list(d["topk"].values())
        if 1 in d["topk"]:
            assert _same(d["topk"][1], d["accuracy"])
        if not any(math.isnan(v) for v in vals):
            assert all(0.0 <= v <= 1.0 + 1e-15 for v in vals)
            assert all(a <= b + 1e-15 for a, b in zip(vals, vals[1:], strict=False))
    if d["ece_bins"] is not None:
        bins = d["ece_bins"]
        np.testing.assert_array_equal(bins["edges"], np.arange(16) / 15)
        assert bins["weight"].shape == bins["confidence"].shape == bins["accuracy"].shape \
            == (15,)
        if d["count"] and not math.isnan(d["loss"]) and not math.isnan(d["accuracy"]):
            assert float(np.sum(bins["weight"])) == pytest.approx(d["weight_sum"], rel=1e-12)
    assert d["count"] >= 0


def compare(result, ref, dtype, *, weighted=False, check_bins=True, tol=None, what=""):
    """Every metric of `result` against the reference dict `ref`.

    Counts, accuracies and bin weights are exact without sample weights (sums of ones), and
    within 1e-13 with them (float64 sums in another order)."""
    dtype = np.dtype(dtype)
    got = plain(result)
    check_invariants(got)
    rtol, atol = TOL[dtype] if tol is None else tol
    for key in FLOAT_METRICS:
        _close(got[key], ref[key], rtol, atol, f"{what} {key}")
    assert got["count"] == ref["count"], (what, got["count"], ref["count"])
    exact_rtol = 1e-13 if weighted else 0.0
    _close(got["weight_sum"], ref["weight_sum"], exact_rtol, 0.0, f"{what} weight_sum")
    _close(got["accuracy"], ref["accuracy"], exact_rtol, 0.0, f"{what} accuracy")
    assert (got["topk"] is None) == (ref["topk"] is None), what
    if ref["topk"] is not None:
        assert list(got["topk"]) == list(ref["topk"]), (what, got["topk"], ref["topk"])
        for k in ref["topk"]:
            _close(got["topk"][k], ref["topk"][k], exact_rtol, 0.0, f"{what} top-{k}")
    assert (got["ece_bins"] is None) == (ref["ece_bins"] is None), what
    if ref["ece_bins"] is not None and check_bins:
        gb, rb = got["ece_bins"], ref["ece_bins"]
        np.testing.assert_array_equal(gb["edges"], np.asarray(rb["edges"]))
        _close(gb["weight"], rb["weight"], exact_rtol, 0.0, f"{what} bin weight")
        _close(gb["accuracy"], rb["accuracy"], exact_rtol, 0.0, f"{what} bin accuracy")
        _close(gb["confidence"], rb["confidence"], rtol, atol, f"{what} bin confidence")
    return got


def check_loss_matches_cross_entropy(result, x, t, dtype, **kwargs):
    """evaluate's loss is cross_entropy(..., reduction="mean")."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("topk",)}
    ce = float(fastxent.cross_entropy(x, t, reduction="mean", **kwargs))
    rtol = 1e-12 if np.dtype(dtype) == np.float64 else 1e-6
    np.testing.assert_allclose(float(result.loss), ce, rtol=rtol, atol=0, equal_nan=True,
                               err_msg="loss vs cross_entropy")


def check(x, t, *, dtype=None, check_bins=True, what="", **kwargs):
    """evaluate vs reference vs cross_entropy; returns the plain result dict."""
    dtype = np.asarray(x).dtype if dtype is None else np.dtype(dtype)
    result = fastxent.evaluate(x, t, **kwargs)
    ref_kwargs = {k: v for k, v in kwargs.items() if k not in ("n_threads", "validate")}
    ref = reference_evaluate(x, t, **ref_kwargs)
    got = compare(result, ref, dtype, weighted=kwargs.get("sample_weight") is not None,
                  check_bins=check_bins, what=what)
    check_loss_matches_cross_entropy(result, x, t, dtype, **kwargs)
    return got


# ---------------------------------------------------------------------------------------------
# data


def avoid_edges(rng, x, from_logits, axis):
    """Move rows whose confidence lies within EDGE_MARGIN of an internal bin edge."""
    dtype = x.dtype
    margin = EDGE_MARGIN[np.dtype(dtype)]
    xm = np.moveaxis(x, axis, -1).copy()
    rows = xm.reshape(-1, xm.shape[-1])
    for _ in range(100):
        conf = confidence_of(rows, from_logits)
        dist = np.min(np.abs(conf[:, None] - EDGES[None, 1:-1]), axis=1) if rows.size else conf
        bad = np.flatnonzero(dist < margin)
        if bad.size == 0:
            break
        if from_logits:
            first = np.argmax(rows[bad], axis=1)
            rows[bad, first] = (rows[bad, first].astype(np.float64) + 0.37).astype(dtype)
        else:
            p = rng.uniform(0.02, 1.0, size=(bad.size, rows.shape[1]))
            rows[bad] = (p / p.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        raise AssertionError("could not move confidences away from the bin edges")
    return np.ascontiguousarray(np.moveaxis(xm, -1, axis))


def make_case(rng, shape, dtype, from_logits, target, axis=-1, scale=3.0):
    """Random input (away from bin edges) and target ("soft" or an integer dtype)."""
    n_classes = shape[axis]
    rows_shape = tuple(np.delete(np.array(shape), axis % len(shape)))
    x = (logits(rng, shape, dtype, scale=scale) if from_logits
         else probabilities(rng, shape, dtype, axis=axis))
    x = avoid_edges(rng, x, from_logits, axis)
    if target == "soft":
        t = soft_targets(rng, shape, dtype, axis=axis)
    else:
        t = labels(rng, rows_shape, n_classes, target)
    return x, t


# ---------------------------------------------------------------------------------------------
# hand-worked examples


def test_hand_worked_probabilities():
    """3 rows, 3 classes, probabilities as given.

    row 0: p = [0.7, 0.2, 0.1], y = 0: rank 0, -log p_y = 0.356675, brier 0.3²+0.2²+0.1² = 0.14,
           H = 0.801819, conf 0.7 -> bin 10 (10/15, 11/15], correct.
    row 1: p = [0.1, 0.35, 0.55], y = 1: rank 1, -log 0.35 = 1.049822,
           brier 0.01+0.4225+0.3025 = 0.735, H = 0.926506, conf 0.55 -> bin 8, wrong (pred 2).
    row 2: p = [0.2, 0.5, 0.3], y = 2: rank 1, -log 0.3 = 1.203973,
           brier 0.04+0.25+0.49 = 0.78, H = 1.029653, conf 0.5 -> bin 7, wrong (pred 1).
    loss = 2.610470 / 3 = 0.870157, accuracy 1/3, top-2 1, brier 1.655 / 3 = 0.551667,
    entropy 2.757978 / 3 = 0.919326, ece = (|1 - 0.7| + |0 - 0.55| + |0 - 0.5|) / 3 = 0.45.
    """
    x = np.array([[0.7, 0.2, 0.1], [0.1, 0.35, 0.55], [0.2, 0.5, 0.3]])
    y = np.array([0, 1, 2])
    ln = math.log
    r = fastxent.evaluate(x, y, from_logits=False, topk=(1, 2, 3))
    d = plain(r)
    check_invariants(d)

    def h(*p):
        return -sum(q * ln(q) for q in p)

    assert d["loss"] == pytest.approx(-(ln(0.7) + ln(0.35) + ln(0.3)) / 3, rel=1e-14)
    assert d["loss"] == pytest.approx(0.870157, abs=1e-6)
    assert d["perplexity"] == pytest.approx(math.exp(d["loss"]), rel=1e-15)
    assert d["accuracy"] == 1 / 3
    assert d["topk"] == {1: 1 / 3, 2: 1.0, 3: 1.0}
    assert d["brier"] == pytest.approx((0.14 + 0.735 + 0.78) / 3, rel=1e-14)
    assert d["entropy"] == pytest.approx(
        (h(0.7, 0.2, 0.1) + h(0.1, 0.35, 0.55) + h(0.2, 0.5, 0.3)) / 3, rel=1e-14)
    assert d["entropy"] == pytest.approx(0.919326, abs=1e-6)
    assert d["ece"] == pytest.approx(0.45, rel=1e-14)
    assert d["count"] == 3 and d["weight_sum"] == 3.0
    bins = d["ece_bins"]
    expected_w = np.zeros(15)
    expected_w[[7, 8, 10]] = 1.0
    np.testing.assert_array_equal(bins["weight"], expected_w)
    conf = np.full(15, NAN)
    conf[[7, 8, 10]] = [0.5, 0.55, 0.7]
    np.testing.assert_array_equal(bins["confidence"], conf)
    acc = np.full(15, NAN)
    acc[[7, 8, 10]] = [0.0, 0.0, 1.0]
    np.testing.assert_array_equal(bins["accuracy"], acc)
    np.testing.assert_array_equal(bins["edges"], np.arange(16) / 15)
    check_loss_matches_cross_entropy(r, x, y, np.float64, from_logits=False)


def test_hand_worked_weighted():
    """The rows above with sample_weight s = [2, 1, 1] and class weight w = [1, 2, 0.5].

    loss = (2·1·0.356675 + 1·2·1.049822 + 1·0.5·1.203973) / (2·1 + 1·2 + 1·0.5)
         = 3.414980 / 4.5 = 0.758884 (class weights apply to the loss only);
    W = 4: accuracy 2/4, brier (2·0.14 + 0.735 + 0.78) / 4 = 0.44875,
    entropy (2·0.801819 + 0.926506 + 1.029653) / 4 = 0.889949,
    ece = (2·0.3 + 0.55 + 0.5) / 4 = 0.4125; bin weights 2 (bin 10), 1 (bin 8), 1 (bin 7).
    """
    x = np.array([[0.7, 0.2, 0.1], [0.1, 0.35, 0.55], [0.2, 0.5, 0.3]])
    y = np.array([0, 1, 2])
    ln = math.log
    r = fastxent.evaluate(x, y, from_logits=False, topk=(1, 2), sample_weight=[2.0, 1.0, 1.0],
                          weight=[1.0, 2.0, 0.5])
    d = plain(r)
    check_invariants(d)
    assert d["loss"] == pytest.approx(
        -(2 * ln(0.7) + 2 * ln(0.35) + 0.5 * ln(0.3)) / 4.5, rel=1e-14)
    assert d["loss"] == pytest.approx(0.758884, abs=1e-6)
    assert d["accuracy"] == 0.5
    assert d["topk"] == {1: 0.5, 2: 1.0}
    assert d["brier"] == pytest.approx((2 * 0.14 + 0.735 + 0.78) / 4, rel=1e-14)
    assert d["entropy"] == pytest.approx(0.889949, abs=1e-6)
    assert d["ece"] == pytest.approx(0.4125, rel=1e-14)
    assert d["count"] == 3 and d["weight_sum"] == 4.0
    np.testing.assert_array_equal(d["ece_bins"]["weight"][[7, 8, 10]], [1.0, 1.0, 2.0])
    assert float(np.nansum(d["ece_bins"]["weight"])) == 4.0


def test_hand_worked_logits_and_ties():
    """Logits; ties ordered by class index.

    row A: z = [0, 0, ln 2] -> p = [1/4, 1/4, 1/2], y = 1: rank = 1 (class 2 larger)
           + 1 (class 0 tied, lower index) = 2; loss ln 4; H = 1.5 ln 2;
           brier 1/16 + 9/16 + 1/4 = 0.875; conf 1/2 -> bin 7, prediction 2 (wrong).
    row B: z = [ln 7, 0, 0] -> p = [7/9, 1/9, 1/9], y = 0: rank 0; loss ln(9/7);
           H = 7/9 ln(9/7) + 2/9 ln 9; brier 6/81; conf 7/9 -> bin 11, correct.
    row C: z = [0, ln 3, ln 3] -> p = [1/7, 3/7, 3/7], y = 2: rank 1 (tied with class 1);
           loss ln(7/3); H = 1/7 ln 7 + 6/7 ln(7/3); brier 1/49 + 9/49 + 16/49 = 26/49;
           conf 3/7 -> bin 6, prediction 1 (first maximum, wrong).
    loss = (ln 4 + ln 9/7 + ln 7/3) / 3 = ln(12) / 3; accuracy 1/3; top-2 2/3; top-3 1;
    ece = (1/2 + 2/9 + 3/7) / 3.
    """
    ln = math.log
    z = np.array([[0.0, 0.0, ln(2)], [ln(7), 0.0, 0.0], [0.0, ln(3), ln(3)]])
    y = np.array([1, 0, 2])
    r = fastxent.evaluate(z, y, topk=(3, 1, 2, 1))
    d = plain(r)
    check_invariants(d)
    assert d["loss"] == pytest.approx(ln(12) / 3, rel=1e-14)
    assert d["accuracy"] == 1 / 3
    assert d["topk"] == {1: 1 / 3, 2: 2 / 3, 3: 1.0}
    assert list(d["topk"]) == [1, 2, 3]
    assert d["entropy"] == pytest.approx(
        (1.5 * ln(2) + 7 / 9 * ln(9 / 7) + 2 / 9 * ln(9) + 1 / 7 * ln(7) + 6 / 7 * ln(7 / 3))
        / 3, rel=1e-13)
    assert d["brier"] == pytest.approx((0.875 + 6 / 81 + 26 / 49) / 3, rel=1e-13)
    assert d["ece"] == pytest.approx((0.5 + 2 / 9 + 3 / 7) / 3, rel=1e-13)
    w = d["ece_bins"]["weight"]
    np.testing.assert_array_equal(np.flatnonzero(w), [6, 7, 11])
    np.testing.assert_allclose(d["ece_bins"]["confidence"][[6, 7, 11]], [3 / 7, 0.5, 7 / 9],
                               rtol=1e-14)
    np.testing.assert_array_equal(d["ece_bins"]["accuracy"][[6, 7, 11]], [0.0, 0.0, 1.0])
    check(z, y, topk=(1, 2, 3))


def test_bin_edges_are_upper_inclusive():
    """Confidences exactly on the edges k/15 (float64 probabilities) land in bin k-1:
    bin b holds (b/15, (b+1)/15]."""
    k = np.arange(1, 16)
    x = np.zeros((15, 3))
    x[:, 0] = k / 15
    y = np.zeros(15, np.int64)
    d = plain(fastxent.evaluate(x, y, from_logits=False))
    np.testing.assert_array_equal(d["ece_bins"]["weight"], np.ones(15))
    np.testing.assert_array_equal(d["ece_bins"]["confidence"], k / 15)
    np.testing.assert_array_equal(d["ece_bins"]["accuracy"], np.ones(15))
    assert d["ece"] == pytest.approx(np.mean(1 - k / 15), rel=1e-14)
    check(x, y, from_logits=False)


# ---------------------------------------------------------------------------------------------
# against the reference, with options


WEIGHT4 = [0.5, 2.0, 1.0, 3.0]
OPTION_SETS = {
    "plain": {},
    "weight": {"weight": WEIGHT4},
    "sample_weight": {"sample_weight": True},
    "both_weights": {"weight": WEIGHT4, "sample_weight": True},
    "ignore_-100": {"ignore_index": -100},
    "ignore_class": {"ignore_index": 1},
    "all": {"weight": WEIGHT4, "sample_weight": True, "ignore_index": 2, "topk": (3, 1, 2, 3)},
    "topk_ge_C": {"topk": (1, 2, 4, 7, 1000)},
    "eps": {"eps": 0.03},
}
LAYOUTS = [((37, 4), -1), ((5, 4, 6), 1), ((4, 9), 0)]


def _option_cases():
    i = 0
    for (name, opts), layout, from_logits, dtype, target in itertools.product(
            OPTION_SETS.items(), LAYOUTS, (True, False), ("float32", "float64"),
            ("labels", "soft")):
        if target == "soft" and "ignore_index" in opts:
            continue
        if name == "eps" and from_logits:
            continue                     # eps is about probabilities
        if target == "labels":
            target = LABEL_DTYPES[i % len(LABEL_DTYPES)]
            i += 1
            if target == "uint8" and opts.get("ignore_index", 0) < 0:
                target = "int8"
        yield pytest.param(opts, layout, from_logits, dtype, target,
                           id=f"{name}-{layout[0]}ax{layout[1]}-"
                              f"{'logits' if from_logits else 'probs'}-{dtype}-{target}")


def _materialise(rng, opts, x, t, axis, target):
    kwargs = dict(opts)
    rows_shape = np.moveaxis(x, axis, -1).shape[:-1]
    if kwargs.get("sample_weight") is True:
        kwargs["sample_weight"] = rng.uniform(0.1, 2.0, size=rows_shape)
    if target != "soft" and "ignore_index" in kwargs:
        t = t.copy()
        flat = t.reshape(-1)
        flat[::3] = kwargs["ignore_index"]           # a third of the rows ignored
        if kwargs["ignore_index"] < 0:
            flat[-1] = 0
    return kwargs, t


@pytest.mark.parametrize("opts, layout, from_logits, dtype, target", list(_option_cases()))
def test_against_reference(opts, layout, from_logits, dtype, target):
    """Every metric vs the reference and the loss vs cross_entropy: float32 and float64,
    logits and probabilities, int8/uint8/int32/int64 labels and soft targets, class and
    sample weights, ignore_index, eps, topk (k >= C included), axis -1, 1 and 0."""
    shape, axis = layout
    rng = np.random.default_rng(_seed(opts, layout, from_logits, dtype, target))
    x, t = make_case(rng, shape, dtype, from_logits, target, axis=axis)
    if opts.get("eps") and not from_logits:
        x.reshape(-1)[::5] = 0.001                  # below eps: clipped in loss and entropy
        x = avoid_edges(rng, x, from_logits, axis)
    kwargs, t = _materialise(rng, opts, x, t, axis, target)
    got = check(x, t, from_logits=from_logits, axis=axis, **kwargs)
    if target == "soft":
        assert got["accuracy"] is None and got["topk"] is None
        assert got["ece"] is None and got["ece_bins"] is None
    else:
        assert got["ece"] is not None and got["topk"] is not None
        if "topk" in opts:
            assert list(got["topk"]) == sorted(set(opts["topk"]))
            for k in opts["topk"]:
                if k >= shape[axis]:
                    assert got["topk"][k] == 1.0
        else:
            assert list(got["topk"]) == [1, 5]
            assert got["topk"][5] == 1.0            # 5 >= C = 4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_label_dtypes_agree(dtype, from_logits):
    """int8, uint8, int16, int32, int64 and uint64 labels give the same result bitwise."""
    rng = np.random.default_rng(_seed("label dtypes", dtype, from_logits))
    x, y = make_case(rng, (300, 7), dtype, from_logits, "int64")
    base = fastxent.evaluate(x, y, from_logits=from_logits, topk=(1, 2, 3)).to_dict()
    for ldt in ("int8", "uint8", "int16", "int32", "uint64"):
        other = fastxent.evaluate(x, y.astype(ldt), from_logits=from_logits, topk=(1, 2, 3))
        assert_identical(other.to_dict(), base, ldt)


def test_integer_input_computes_in_float64():
    """Integer logits compute in float64, as in cross_entropy."""
    rng = np.random.default_rng(3)
    x = rng.integers(-4, 5, size=(50, 6))
    y = labels(rng, (50,), 6)
    a = fastxent.evaluate(x, y, topk=(1, 2))
    b = fastxent.evaluate(x.astype(np.float64), y, topk=(1, 2))
    assert_identical(a.to_dict(), b.to_dict())
    check(x, y, dtype=np.float64, topk=(1, 2))


# ---------------------------------------------------------------------------------------------
# row lengths: short rows over many blocks, long rows


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_short_rows_many_blocks(n_classes, dtype):
    """Short rows, enough of them for several 32768-element blocks (and two threads)."""
    n_rows = 2 * (32768 // n_classes) + 123
    rng = np.random.default_rng(_seed("short", n_classes, dtype))
    x, y = make_case(rng, (n_rows, n_classes), dtype, True, "int64")
    s = rng.uniform(0.2, 3.0, size=n_rows)
    y[::7] = -1
    check(x, y, topk=(1, 2, 5), sample_weight=s, ignore_index=-1,
          weight=np.linspace(0.5, 2.0, n_classes), n_threads=2)
    check(x, y, topk=(1, 2, 5), ignore_index=-1)
    t = soft_targets(rng, x.shape, dtype)
    check(x, t, sample_weight=s, n_threads=2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("n_classes", [1000, 5000])
def test_long_rows(n_classes, from_logits, dtype):
    """Long rows (several blocks of rows); a third of the labels at the argmax."""
    n_rows = 3 * max(1, 32768 // n_classes) + 5
    rng = np.random.default_rng(_seed("long", n_classes, from_logits, dtype))
    x, y = make_case(rng, (n_rows, n_classes), dtype, from_logits, "int32", scale=1.5)
    y[::3] = np.argmax(x[::3], axis=1)
    got = check(x, y, from_logits=from_logits, topk=(1, 5, 100, n_classes - 1, n_classes),
                n_threads=2)
    assert got["accuracy"] >= 1 / 3
    assert got["topk"][n_classes] == 1.0
    s = rng.uniform(0.2, 3.0, size=n_rows)
    check(x, soft_targets(rng, x.shape, dtype), from_logits=from_logits, sample_weight=s)


# ---------------------------------------------------------------------------------------------
# ties


def test_rank_formula_matches_stable_sort():
    """The reference's stable-argsort rank equals the documented counting formula."""
    rng = np.random.default_rng(11)
    z = rng.integers(-2, 3, size=(2000, 6)).astype(np.float64)   # many ties
    z[::9] = 0.0
    z[5::11, 2] = -np.inf
    y = labels(rng, (2000,), 6)
    np.testing.assert_array_equal(rank_stable(z, y), rank_counting(z, y))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ties_hand_worked(dtype):
    """Tied classes are ordered by class index: rank = #{x_c > x_y} + #{c < y : x_c = x_y}.

    ranks: [0,0,0,0] y=0 -> 0; [0,0,0,0] y=2 -> 2; [1,3,3,0] y=1 -> 0; [1,3,3,0] y=2 -> 1;
    [5,5,5,5] y=3 -> 3; [-1,2,2,2] y=3 -> 2.  top-1 2/6, top-2 3/6, top-3 5/6, top-4 1.
    """
    z = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 3, 3, 0], [1, 3, 3, 0], [5, 5, 5, 5],
                  [-1, 2, 2, 2]], dtype=dtype)
    y = np.array([0, 2, 1, 2, 3, 3])
    d = check(z, y, topk=(1, 2, 3, 4))
    np.testing.assert_array_equal(rank_stable(z, y), [0, 2, 0, 1, 3, 2])
    assert d["topk"] == {1: 2 / 6, 2: 3 / 6, 3: 5 / 6, 4: 1.0}
    assert d["accuracy"] == 2 / 6
    # ECE: the prediction is the first maximum (row 3 predicts class 1, wrong)
    # all-zero / all-equal rows: conf 1/4 -> bin 3 with accuracy 1/3 (rows 0, 1, 4)
    assert d["ece_bins"]["weight"][3] == 3.0
    assert d["ece_bins"]["accuracy"][3] == 1 / 3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ties_probabilities(dtype):
    """Ties in probability rows, including a duplicated maximum."""
    x = np.array([[0.25, 0.25, 0.25, 0.25], [0.45, 0.45, 0.05, 0.05],
                  [0.45, 0.45, 0.05, 0.05], [0.05, 0.05, 0.45, 0.45],
                  [0.05, 0.05, 0.45, 0.45]], dtype=dtype)
    y = np.array([3, 0, 1, 3, 2])
    d = check(x, y, from_logits=False, topk=(1, 2, 3))
    # ranks 3, 0, 1, 1, 0
    assert d["topk"] == {1: 2 / 5, 2: 4 / 5, 3: 4 / 5}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ties_random(dtype):
    """Tie-heavy random logits (small integers, duplicated maxima) vs the reference."""
    rng = np.random.default_rng(_seed("ties", dtype))
    z = rng.integers(-1, 2, size=(3000, 7)).astype(dtype)
    z[::13] = 0
    y = labels(rng, (3000,), 7)
    z = avoid_edges(rng, z, True, -1)
    check(z, y, topk=(1, 2, 3, 6, 7))


# ---------------------------------------------------------------------------------------------
# special cases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_class(dtype):
    """C = 1: logits give loss 0, accuracy 1, confidence 1 (last bin), ece 0."""
    x = np.array([[3.0], [-2.0], [0.0]], dtype=dtype)
    y = np.zeros(3, np.int8)
    d = check(x, y, topk=(1, 5))
    assert d["loss"] == 0.0
    assert d["perplexity"] == 1.0
    assert d["accuracy"] == 1.0 and d["topk"] == {1: 1.0, 5: 1.0}
    assert d["brier"] == 0.0
    assert d["ece"] == pytest.approx(0.0, abs=1e-15)
    assert d["ece_bins"]["weight"][14] == 3.0
    # probabilities are not renormalised: [0.7] gives -log 0.7, brier 0.09, conf 0.7
    p = np.array([[0.7], [0.7]], dtype=dtype)
    d = check(p, np.zeros(2, np.int64), from_logits=False)
    assert d["loss"] == pytest.approx(-math.log(0.7), rel=1e-6)
    assert d["brier"] == pytest.approx(0.09, rel=1e-6)
    assert d["ece_bins"]["weight"][10] == 2.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("how", ["no_rows", "all_ignored"])
def test_no_counted_rows(dtype, how):
    """No counted row: every metric NaN, count 0, weight_sum 0."""
    if how == "no_rows":
        x, y, kw = np.zeros((0, 4), dtype), np.zeros(0, np.int64), {}
    else:
        x, y, kw = np.ones((5, 4), dtype), np.full(5, -100), {"ignore_index": -100}
    d = plain(fastxent.evaluate(x, y, topk=(1, 2), **kw))
    for key in FLOAT_METRICS + ("accuracy",):
        assert math.isnan(d[key]), key
    assert list(d["topk"]) == [1, 2] and all(math.isnan(v) for v in d["topk"].values())
    assert d["count"] == 0 and d["weight_sum"] == 0.0
    np.testing.assert_array_equal(d["ece_bins"]["weight"], np.zeros(15))
    assert np.all(np.isnan(d["ece_bins"]["confidence"]))
    assert np.all(np.isnan(d["ece_bins"]["accuracy"]))
    # soft targets with no rows
    d = plain(fastxent.evaluate(np.zeros((0, 4), dtype), np.zeros((0, 4), dtype)))
    for key in ("loss", "perplexity", "entropy", "brier"):
        assert math.isnan(d[key]), key
    assert d["accuracy"] is None and d["ece_bins"] is None
    assert d["count"] == 0 and d["weight_sum"] == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["labels", "soft"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_nan_row_poisons_every_metric(dtype, target, from_logits):
    """A row holding NaN makes every metric NaN; count and weight_sum still count it."""
    rng = np.random.default_rng(_seed("nan", dtype, target, from_logits))
    x, t = make_case(rng, (40, 5), dtype, from_logits,
                     "soft" if target == "soft" else "int64")
    x[17, 3] = np.nan
    s = rng.uniform(0.5, 1.5, size=40)
    r = fastxent.evaluate(x, t, from_logits=from_logits, sample_weight=s, topk=(1, 2),
                          validate=False)
    d = plain(r)
    check_invariants(d)
    for key in ("loss", "perplexity", "entropy", "brier"):
        assert math.isnan(d[key]), key
    if target == "soft":
        assert d["accuracy"] is None and d["ece"] is None and d["topk"] is None
    else:
        assert math.isnan(d["accuracy"]) and math.isnan(d["ece"])
        assert all(math.isnan(v) for v in d["topk"].values())
    assert d["count"] == 40
    assert d["weight_sum"] == pytest.approx(float(np.sum(s)), rel=1e-13)
    ref = reference_evaluate(x, t, from_logits=from_logits, sample_weight=s, topk=(1, 2))
    compare(r, ref, dtype, weighted=True, check_bins=False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ignored_nan_row_counts_nowhere(dtype):
    """A NaN row whose label is ignore_index counts nowhere (as in cross_entropy)."""
    rng = np.random.default_rng(_seed("ignored nan", dtype))
    x, y = make_case(rng, (30, 4), dtype, True, "int64")
    x[4, 1] = np.nan
    y[4] = -1
    d = check(x, y, ignore_index=-1, topk=(1, 2))
    assert d["count"] == 29 and not math.isnan(d["loss"]) and not math.isnan(d["ece"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["labels", "soft"])
def test_masked_logits(dtype, target):
    """-inf (masked) logits: their probability is 0 and 0·log 0 = 0 in the entropy."""
    inf = np.inf
    rng = np.random.default_rng(_seed("masked", dtype, target))
    x, _ = make_case(rng, (60, 5), dtype, True, "int64")
    x[::2, 1] = -inf
    x[::3, 3] = -inf
    x[5, [0, 2, 3, 4]] = -inf               # one finite class left
    y = labels(rng, (60,), 5)
    y[x[np.arange(60), y] == -inf] = 0
    y[5] = 1
    x = avoid_edges(rng, x, True, -1)
    if target == "soft":
        t = soft_targets(rng, x.shape, dtype)
        t[x == -inf] = 0.0                  # no target mass on masked classes
        d = check(x, t, topk=(1, 2))
    else:
        d = check(x, y, topk=(1, 2, 4))
    for key in ("loss", "entropy", "brier"):
        assert math.isfinite(d[key]), key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_label_on_masked_class(dtype):
    """A label on a -inf class: the loss is +inf (as cross_entropy), perplexity +inf; the rank
    still follows the rule (-inf ties ordered by index), the other metrics stay finite."""
    x = np.array([[0.0, -np.inf, 1.0, -np.inf], [2.0, 0.5, -1.0, 0.0]], dtype=dtype)
    y = np.array([3, 0])
    d = check(x, y, topk=(1, 2, 3, 4))
    assert d["loss"] == np.inf and d["perplexity"] == np.inf
    assert d["topk"] == {1: 0.5, 2: 0.5, 3: 0.5, 4: 1.0}        # ranks 3 and 0
    assert math.isfinite(d["entropy"]) and math.isfinite(d["brier"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plus_inf_logit_loss_is_cross_entropy(dtype):
    """A +inf logit: the loss is still cross_entropy's (0 for that row at its label, +inf
    elsewhere)."""
    x = np.array([[np.inf, 0.0, 0.0], [1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], dtype=dtype)
    for y in (np.array([0, 2, 1]), np.array([1, 2, 1])):
        r = fastxent.evaluate(x, y, topk=(1, 2))
        check_loss_matches_cross_entropy(r, x, y, dtype)
        check_invariants(plain(r))


def test_confident_rows_float64():
    """Confident rows keep full relative precision in the loss."""
    x = np.array([[40.0, 0.0, 0.0]])
    d = check(x, np.array([0]))
    q = math.exp(-40) / (1 + 2 * math.exp(-40))
    assert d["loss"] == pytest.approx(2 * math.exp(-40), rel=1e-12)
    assert d["loss"] == pytest.approx(math.log1p(2 * math.exp(-40)), rel=1e-14)
    assert d["accuracy"] == 1.0
    assert 0.0 <= d["brier"] <= 1e-30          # (2q)² + 2q² ≈ 5e-35
    assert d["entropy"] == pytest.approx(2 * q * (1 - math.log(q)), abs=1e-15)
    assert d["ece"] == pytest.approx(0.0, abs=1e-15)
    assert d["ece_bins"]["weight"][14] == 1.0
    # several confident rows, right and wrong
    x = np.array([[40.0, 0.0, 0.0], [0.0, 35.0, 0.0], [0.0, 0.0, 30.0], [38.0, 0.0, 0.0]])
    y = np.array([0, 1, 2, 1])
    d = check(x, y, topk=(1, 2))
    expected = (math.log1p(2 * math.exp(-40)) + math.log1p(2 * math.exp(-35))
                + math.log1p(2 * math.exp(-30)) + 38 + math.log1p(2 * math.exp(-38))) / 4
    assert d["loss"] == pytest.approx(expected, rel=1e-14)
    assert d["accuracy"] == 0.75
    assert d["ece"] == pytest.approx(0.25, rel=1e-12)


def test_confident_rows_float32():
    """float32: loss log1p(2 e^-20) ≈ 4.1e-9 to float32 precision."""
    x = np.array([[20.0, 0.0, 0.0], [0.0, 17.0, 0.0]], np.float32)
    d = check(x, np.array([0, 1]))
    expected = (math.log1p(2 * math.exp(-20)) + math.log1p(2 * math.exp(-17))) / 2
    assert d["loss"] == pytest.approx(expected, rel=2e-5)


# ---------------------------------------------------------------------------------------------
# threads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["labels", "soft"])
def test_threads_bitwise_identical(dtype, target):
    """n_threads=1 and n_threads=2 give bitwise identical results (inputs big enough for two
    threads to run)."""
    rng = np.random.default_rng(_seed("threads", dtype, target))
    x, t = make_case(rng, (8000, 10), dtype, True, "soft" if target == "soft" else "int64")
    kw = {"sample_weight": rng.uniform(0.1, 2.0, 8000), "weight": np.linspace(0.5, 2, 10)}
    if target == "labels":
        t[::5] = 7
        kw.update(ignore_index=7, topk=(1, 2, 3, 9))
    one = fastxent.evaluate(x, t, n_threads=1, **kw).to_dict()
    two = fastxent.evaluate(x, t, n_threads=2, **kw).to_dict()
    assert_identical(one, two)
    xp, _ = make_case(rng, (8000, 10), dtype, False, "int64")
    one = fastxent.evaluate(xp, t, from_logits=False, n_threads=1, **kw).to_dict()
    two = fastxent.evaluate(xp, t, from_logits=False, n_threads=2, **kw).to_dict()
    assert_identical(one, two)


# ---------------------------------------------------------------------------------------------
# result type


def test_result_type():
    """EvaluationResult is a frozen dataclass; ece_bins a CalibrationBins."""
    r = fastxent.evaluate(np.array([[1.0, 2.0], [0.5, -1.0]]), np.array([1, 1]))
    assert dataclasses.is_dataclass(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.loss = 0.0
    assert isinstance(r.ece_bins, fastxent.CalibrationBins)
    np.testing.assert_array_equal(np.asarray(r.ece_bins.edges), np.arange(16) / 15)
    assert np.shape(r.ece_bins.edges) == (16,)
    for k in ("weight", "confidence", "accuracy"):
        assert np.shape(getattr(r.ece_bins, k)) == (15,)
    assert r.count == 2 and r.weight_sum == 2.0
    assert list(r.topk) == [1, 5]
    json.dumps(r.to_dict())                   # plain Python values


# ---------------------------------------------------------------------------------------------
# Evaluator


def _splits(n, cuts):
    bounds = [0, *cuts, n]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


EVAL_CASES = {
    "labels-f64": dict(dtype="float64", from_logits=True, target="int64", shape=(500, 6),
                       axis=-1, opts={"weight": np.linspace(0.5, 2, 6), "ignore_index": 4,
                                      "topk": (1, 3)}),
    "labels-f32-axis1": dict(dtype="float32", from_logits=True, target="int32",
                             shape=(120, 5, 3), axis=1, opts={"topk": (1, 2, 5)}),
    "probs-f64": dict(dtype="float64", from_logits=False, target="uint8", shape=(300, 4),
                      axis=-1, opts={"eps": 1e-3}),
    "soft-f64": dict(dtype="float64", from_logits=True, target="soft", shape=(400, 7),
                     axis=-1, opts={"weight": np.linspace(2, 0.5, 7)}),
    "soft-f32-probs": dict(dtype="float32", from_logits=False, target="soft", shape=(200, 3),
                           axis=-1, opts={}),
}


def _eval_data(name):
    case = EVAL_CASES[name]
    rng = np.random.default_rng(_seed("evaluator", name))
    x, t = make_case(rng, case["shape"], case["dtype"], case["from_logits"], case["target"],
                     axis=case["axis"])
    opts = dict(case["opts"], from_logits=case["from_logits"], axis=case["axis"])
    if "ignore_index" in opts:
        t.reshape(-1)[::4] = opts["ignore_index"]
    s = rng.uniform(0.1, 2.0, size=np.moveaxis(x, case["axis"], -1).shape[:-1])
    return x, t, s, opts


def _assert_close_results(a, b, rtol=1e-13, atol=1e-15, what=""):
    """Two results equal up to float64 rounding (counts exact)."""
    a, b = plain(a), plain(b)
    for key in FLOAT_METRICS + ("accuracy", "weight_sum"):
        _close(a[key], b[key], rtol, atol, f"{what} {key}")
    assert a["count"] == b["count"]
    assert (a["topk"] is None) == (b["topk"] is None)
    if a["topk"] is not None:
        assert list(a["topk"]) == list(b["topk"])
        for k in a["topk"]:
            _close(a["topk"][k], b["topk"][k], rtol, atol, f"{what} top-{k}")
    assert (a["ece_bins"] is None) == (b["ece_bins"] is None)
    if a["ece_bins"] is not None:
        for k in BIN_KEYS:
            _close(a["ece_bins"][k], b["ece_bins"][k], rtol, atol, f"{what} bins {k}")


@pytest.mark.parametrize("name", list(EVAL_CASES))
def test_evaluator_chunks_equal_whole(name):
    """update() over uneven chunks (an empty one included) equals evaluate on the whole."""
    x, t, s, opts = _eval_data(name)
    n = x.shape[0]
    whole = fastxent.evaluate(x, t, sample_weight=s, **opts)
    ev = fastxent.Evaluator(**opts)
    for sl in _splits(n, [7, 7, n // 3, n // 3 + 1, n - 2]):
        assert ev.update(x[sl], t[sl], sample_weight=s[sl]) is ev
    _assert_close_results(ev.result(), whole, what=name)
    # without sample weights
    whole = fastxent.evaluate(x, t, **opts)
    ev = fastxent.Evaluator(**opts)
    for sl in _splits(n, [n // 2, n // 2, n - 1]):
        ev.update(x[sl], t[sl])
    _assert_close_results(ev.result(), whole, what=name)
    assert plain(ev.result())["count"] == plain(whole)["count"]


@pytest.mark.parametrize("name", list(EVAL_CASES))
def test_evaluator_merge_equals_whole(name):
    """merge() of evaluators fed with parts equals evaluate on the whole."""
    x, t, s, opts = _eval_data(name)
    n = x.shape[0]
    whole = fastxent.evaluate(x, t, sample_weight=s, **opts)
    parts = []
    for sl in _splits(n, [n // 5, n // 2]):
        parts.append(fastxent.Evaluator(**opts).update(x[sl], t[sl], sample_weight=s[sl]))
    first = parts[0]
    assert first.merge(parts[1]) is first
    first.merge(parts[2])
    _assert_close_results(first.result(), whole, what=name)
    # the merged-in evaluators are unchanged
    _assert_close_results(parts[2].result(),
                          fastxent.evaluate(x[n // 2:], t[n // 2:], sample_weight=s[n // 2:],
                                            **opts), what=name + " part")


@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("name", list(EVAL_CASES))
def test_evaluator_json_round_trip(name, with_nan):
    """to_dict -> json -> from_dict gives the same result bitwise, and the restored evaluator
    goes on exactly like the original."""
    x, t, s, opts = _eval_data(name)
    if with_nan:
        x = x.copy()
        x[(1,) + (0,) * (x.ndim - 1)] = np.nan            # in a counted row
        if "ignore_index" in opts:
            t[1] = 0
    n = x.shape[0]
    ev = fastxent.Evaluator(**opts, validate=False).update(x[: n // 2], t[: n // 2],
                                                           sample_weight=s[: n // 2])
    text = json.dumps(ev.to_dict())
    back = fastxent.Evaluator.from_dict(json.loads(text))
    assert_identical(back.result().to_dict(), ev.result().to_dict())
    back2 = fastxent.Evaluator.from_dict(json.loads(text), n_threads=1)
    ev.update(x[n // 2:], t[n // 2:], sample_weight=s[n // 2:])
    back2.update(x[n // 2:], t[n // 2:], sample_weight=s[n // 2:])
    assert_identical(back2.result().to_dict(), ev.result().to_dict())
    if with_nan:
        assert math.isnan(ev.result().loss)


def test_evaluator_fresh_result():
    """A fresh Evaluator (no rows): NaN metrics, count 0, weight_sum 0."""
    r = fastxent.Evaluator().result()
    d = r.to_dict()
    for key in ("loss", "perplexity", "entropy", "brier"):
        assert math.isnan(d[key]), key
    for key in ("accuracy", "ece"):
        assert d[key] is None or math.isnan(d[key]), key
    assert d["count"] == 0 and d["weight_sum"] == 0.0
    # an empty first chunk: the same as evaluate on it
    ev = fastxent.Evaluator(topk=(1, 3)).update(np.zeros((0, 4)), np.zeros(0, np.int64))
    assert_identical(ev.result().to_dict(),
                     fastxent.evaluate(np.zeros((0, 4)), np.zeros(0, np.int64),
                                       topk=(1, 3)).to_dict())


def _fed(rng, n_classes=4, soft=False, **opts):
    x = logits(rng, (20, n_classes)) if opts.get("from_logits", True) else probabilities(
        rng, (20, n_classes))
    t = soft_targets(rng, x.shape) if soft else labels(rng, (20,), n_classes)
    return fastxent.Evaluator(**opts).update(x, t)


@pytest.mark.parametrize("other", [
    dict(n_classes=5),
    dict(soft=True),
    dict(from_logits=False),
    dict(topk=(1, 3)),
    dict(weight=[1.0, 2.0, 1.0, 1.0]),
    dict(ignore_index=-100),
    dict(eps=1e-3),
], ids=["classes", "target_kind", "from_logits", "topk", "weight", "ignore_index", "eps"])
def test_evaluator_merge_mismatch_raises(other):
    """merge() with another number of classes, other options or another target kind raises
    ValueError and changes nothing."""
    rng = np.random.default_rng(0)
    base_opts = {"topk": (1, 5)}
    ev = _fed(rng, **base_opts)
    other = dict(other)
    opts = dict(base_opts)
    opts.update({k: v for k, v in other.items() if k not in ("n_classes", "soft")})
    o = _fed(rng, n_classes=other.get("n_classes", 4), soft=other.get("soft", False), **opts)
    before = ev.result().to_dict()
    with pytest.raises(ValueError):
        ev.merge(o)
    assert_identical(ev.result().to_dict(), before)


def test_evaluator_update_mismatch_raises():
    """Every chunk must have the classes and the target kind of the first one."""
    rng = np.random.default_rng(1)
    ev = fastxent.Evaluator().update(logits(rng, (10, 4)), labels(rng, (10,), 4))
    before = ev.result().to_dict()
    with pytest.raises(ValueError):
        ev.update(logits(rng, (10, 5)), labels(rng, (10,), 5))
    with pytest.raises(ValueError):
        ev.update(logits(rng, (10, 4)), soft_targets(rng, (10, 4)))
    assert_identical(ev.result().to_dict(), before)
    ev = fastxent.Evaluator().update(logits(rng, (10, 4)), soft_targets(rng, (10, 4)))
    with pytest.raises(ValueError):
        ev.update(logits(rng, (10, 4)), labels(rng, (10,), 4))


def test_evaluator_failed_update_changes_nothing():
    """An update that raises (a label out of range in its last row) leaves the state as it
    was: nothing is computed partially."""
    rng = np.random.default_rng(2)
    x, y = logits(rng, (50, 4)), labels(rng, (50,), 4)
    ev = fastxent.Evaluator(topk=(1, 2)).update(x, y)
    before = ev.to_dict()
    bad = y.copy()
    bad[-1] = 4
    with pytest.raises(ValueError, match=r"target\[49\] = 4"):
        ev.update(x, bad)
    with pytest.raises(ValueError):
        ev.update(x, y, sample_weight=np.ones(7))
    assert_identical(ev.to_dict(), before)
    ev.update(x, y)                             # still usable, and counts x twice
    _assert_close_results(ev.result(),
                          fastxent.evaluate(np.concatenate([x, x]), np.concatenate([y, y]),
                                            topk=(1, 2)))


# ---------------------------------------------------------------------------------------------
# errors


def _message(func, *args, **kwargs):
    with pytest.raises(Exception) as info:
        func(*args, **kwargs)
    return info


def test_label_out_of_range_names_the_row():
    """Same message as cross_entropy: the offending row's index and value."""
    x = np.zeros((2, 3, 4))
    y = np.array([[0, 1, 2, 0], [0, 1, 2, 7]])
    ce = _message(fastxent.cross_entropy, x, y, axis=1)
    ev = _message(fastxent.evaluate, x, y, axis=1)
    assert ev.type is ValueError and ce.type is ValueError
    assert "target[1, 3] = 7" in str(ev.value)
    assert str(ce.value) in str(ev.value)
    ev = _message(fastxent.evaluate, np.zeros((4, 3)), np.array([0, -1, 5, 0]))
    assert "target[1] = -1" in str(ev.value)
    ev = _message(fastxent.evaluate, np.zeros((4, 3)), np.array([0, -1, 5, 0]),
                  ignore_index=-1)
    assert "target[2] = 5" in str(ev.value)


@pytest.mark.parametrize("topk", [(0,), (1, 0), (-1,), (1, -5), (1.5,), (1, 2.0), ("a",), (),
                                  [], "5", (None,)],
                         ids=lambda v: repr(v))
def test_bad_topk_raises(topk):
    """topk must be a non-empty sequence of positive ints."""
    x, y = np.zeros((3, 4)), np.array([0, 1, 2])
    with pytest.raises((ValueError, TypeError)):
        fastxent.evaluate(x, y, topk=topk)
    with pytest.raises((ValueError, TypeError)):
        fastxent.Evaluator(topk=topk)


@pytest.mark.parametrize("case", [
    dict(kw={"sample_weight": np.ones(3)}),
    dict(kw={"weight": np.ones(3)}),
    dict(kw={"ignore_index": 1}, soft=True),
    dict(kw={}, x=np.full((4, 4), 1.5), from_logits=False),
    dict(kw={}, x=np.full((4, 4), -0.5), from_logits=False),
    dict(kw={"eps": 0.7}, from_logits=False),
    dict(kw={"n_threads": 0}),
    dict(kw={}, t=np.array([0.0, 1.0, 2.0, 1.0])),
    dict(kw={}, t=np.zeros((4, 5))),
    dict(kw={}, t=np.array([0, 1, 2])),
    dict(kw={"axis": 2}),
], ids=["sample_weight_shape", "weight_shape", "ignore_soft", "prob_gt_1", "prob_lt_0", "eps",
        "n_threads_0", "float_labels", "soft_shape", "label_shape", "axis"])
def test_errors_like_cross_entropy(case):
    """The shared arguments are checked as cross_entropy checks them: the same exception."""
    x = case.get("x", np.full((4, 4), 0.25))
    t = case.get("t", np.full((4, 4), 0.25) if case.get("soft") else np.array([0, 1, 2, 3]))
    kw = dict(case["kw"], from_logits=case.get("from_logits", True))
    ce = _message(fastxent.cross_entropy, x, t, **kw)
    ev = _message(fastxent.evaluate, x, t, **kw)
    assert ev.type is ce.type, (ev.value, ce.value)


# ---------------------------------------------------------------------------------------------
# options: checked and made plain Python values when the Evaluator is made


def _reject_constant(name):
    raise AssertionError(f"non-strict JSON constant {name}")


def _strict_round_trip(state):
    """``state`` through strict JSON both ways (no NaN or Infinity literal)."""
    return json.loads(json.dumps(state, allow_nan=False), parse_constant=_reject_constant)


def test_numpy_scalar_options_are_plain_and_state_is_strict_json():
    """NumPy scalars and 0-d arrays as options: the state is strict JSON (a NaN row included),
    restores bitwise, and equals the state of the same options given as Python numbers."""
    rng = np.random.default_rng(3)
    x, y = logits(rng, (40, 5)), labels(rng, (40,), 5)
    y[::7] = -1
    x[2, 1] = np.nan                           # a counted row: the sums become NaN
    numpy_options = dict(ignore_index=np.int64(-1), eps=np.float32(1e-6),
                         topk=np.array([3, 1], dtype=np.uint8),
                         weight=np.linspace(0.5, 2, 5).astype(np.float32), axis=np.int32(-1),
                         from_logits=np.bool_(True), n_threads=np.int64(1))
    ev = fastxent.Evaluator(**numpy_options).update(x, y)
    state = ev.to_dict()
    options = state["options"]
    assert options == {"from_logits": True, "topk": [1, 3],
                       "weight": np.linspace(0.5, 2, 5).astype(np.float32).tolist(),
                       "ignore_index": -1, "eps": float(np.float32(1e-6)), "axis": -1,
                       "per_class": False, "confusion": False, "prior": None}
    assert [type(options[k]) for k in ("from_logits", "ignore_index", "eps", "axis")] == \
        [bool, int, float, int]
    assert all(type(w) is float for w in options["weight"])
    assert state["sums"]["loss"] == "NaN" and state["sums"]["count"] == 34.0
    back = fastxent.Evaluator.from_dict(_strict_round_trip(state))
    assert_identical(back.result().to_dict(), ev.result().to_dict())
    assert math.isnan(back.result().loss)
    python = fastxent.Evaluator(ignore_index=-1, eps=float(np.float32(1e-6)), topk=(1, 3),
                                weight=np.linspace(0.5, 2, 5).astype(np.float32).tolist())
    python.update(x, y)
    assert python.to_dict() == state
    python.merge(back)                          # the same options, however they were given
    zero_d = fastxent.Evaluator(ignore_index=np.array(-1), eps=np.array(1e-3), axis=np.array(1))
    assert zero_d.options.ignore_index == -1 and zero_d.options.axis == 1


def test_infinite_sums_round_trip():
    """+inf and -inf sums are written as "Infinity" and "-Infinity" and read back."""
    ev = fastxent.Evaluator(topk=(1,))
    loss, entropy = (kernels.EVAL_STATS.index(name) for name in ("loss", "entropy"))
    ev._stats[loss], ev._stats[entropy] = math.inf, -math.inf
    state = ev.to_dict()
    assert (state["sums"]["loss"], state["sums"]["entropy"]) == ("Infinity", "-Infinity")
    back = fastxent.Evaluator.from_dict(_strict_round_trip(state))
    assert back._stats[loss] == math.inf and back._stats[entropy] == -math.inf


def test_plain_json_nan_states_still_load():
    """A state written before the strict encoding (NaN as a bare JSON NaN) still loads."""
    rng = np.random.default_rng(4)
    x, y = logits(rng, (10, 3)), labels(rng, (10,), 3)
    x[0, 0] = np.nan
    ev = fastxent.Evaluator().update(x, y)
    old = json.loads(json.dumps(ev.to_dict()).replace('"NaN"', "NaN"))
    assert math.isnan(old["sums"]["loss"])
    assert_identical(fastxent.Evaluator.from_dict(old).result().to_dict(),
                     ev.result().to_dict())


@pytest.mark.parametrize("options, error, message", [
    (dict(eps=math.nan), ValueError, "eps must be a number in [0, 0.5), got nan"),
    (dict(eps=np.float64(math.inf)), ValueError, "eps must be a number in [0, 0.5), got inf"),
    (dict(eps=-1e-3), ValueError, "eps must be a number in [0, 0.5), got -0.001"),
    (dict(weight=[1.0, math.nan, 1.0]), ValueError, "weight must be finite: weight[1] = nan"),
    (dict(weight=np.array([1.0, 1.0, -math.inf])), ValueError,
     "weight must be finite: weight[2] = -inf"),
    (dict(weight=np.ones((1, 3))), ValueError,
     "weight must be 1-D, one weight per class, got shape (1, 3)"),
    (dict(weight=["a", "b"]), TypeError, "weight must have a real dtype"),
    (dict(ignore_index=2**63), ValueError, "ignore_index must be None or an int that fits in "
                                           f"int64 (labels are compared as int64), got {2**63}"),
    (dict(ignore_index=np.uint64(2**64 - 1)), ValueError, "ignore_index must be None or an int "
                                                          "that fits in int64"),
    (dict(ignore_index=np.True_), TypeError, "ignore_index must be None or an int that fits in "
                                             "int64 (labels are compared as int64), got True"),
    (dict(ignore_index=-1.0), TypeError, "ignore_index must be None or an int"),
    (dict(topk=(1, 2**63)), ValueError, "topk must hold positive ints of at most 2**63 - 1"),
    (dict(topk=(np.True_,)), TypeError, "topk must hold positive ints of at most 2**63 - 1 (a "
                                        "k of at least C gives 1), got True"),
    (dict(axis=1.5), TypeError, "axis must be an int, got 1.5"),
    (dict(axis=np.True_), TypeError, "axis must be an int"),
    (dict(n_threads=2**31), ValueError, "n_threads=2147483648 is out of range"),
    (dict(n_threads=0), ValueError, "n_threads=0 is invalid"),
], ids=lambda v: repr(v) if not isinstance(v, dict) else ",".join(f"{k}" for k in v))
def test_bad_options_raise_at_construction(options, error, message):
    """Every option is checked when the Evaluator is made, before it sees data, with a message
    that names it (NaN and infinite eps or weights included)."""
    with pytest.raises(error) as info:
        fastxent.Evaluator(**options)
    assert message in str(info.value)
    with pytest.raises(error):
        fastxent.evaluate(np.zeros((2, 3)), np.array([0, 1]), **options)


def test_negative_class_weights_are_pytorch_s():
    """Negative (finite) class weights are allowed, as in PyTorch, with PyTorch's loss."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, y = logits(rng, (64, 4)), labels(rng, (64,), 4)
    weight = np.array([1.5, -0.5, 2.0, 0.25])
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y),
                                                 weight=torch.from_numpy(weight)).item()
    ev = fastxent.Evaluator(weight=weight).update(x, y)
    assert ev.result().loss == pytest.approx(expected, rel=1e-12)
    assert fastxent.Evaluator.from_dict(_strict_round_trip(ev.to_dict())).result().loss == \
        ev.result().loss


def test_merge_compares_normalised_options():
    """Options that are the same numbers merge whatever their types; the message for options
    that differ lists only what differs."""
    x, y = np.zeros((4, 3)), np.array([0, 1, 2, 1])
    a = fastxent.Evaluator(weight=np.array([1.0, 2.0, 3.0], np.float32), eps=np.float64(0.25),
                           ignore_index=np.int8(-1)).update(x, y)
    b = fastxent.Evaluator(weight=[1, 2, 3], eps=0.25, ignore_index=-1).update(x, y)
    a.merge(b)
    assert a.result().count == 8
    c = fastxent.Evaluator(weight=[1, 2, 3], eps=0.125, ignore_index=-1)
    with pytest.raises(ValueError) as info:
        a.merge(c)
    assert str(info.value) == "cannot merge Evaluators whose options differ: eps=0.25 vs 0.125"


def _state_with(change):
    rng = np.random.default_rng(6)
    ev = fastxent.Evaluator(topk=(1, 2), weight=[1.0, 2.0, 3.0])
    state = json.loads(json.dumps(ev.update(logits(rng, (9, 3)), labels(rng, (9,), 3)).to_dict()))
    change(state)
    return state


def _set(path, value):
    def change(state):
        *parents, last = path
        for key in parents:
            state = state[key]
        if value is KeyError:
            del state[last]
        else:
            state[last] = value
    return change


@pytest.mark.parametrize("change, message", [
    (_set(["version"], True), "not an Evaluator state (from Evaluator.to_dict) of version 2"),
    (_set(["version"], 1), "not an Evaluator state (from Evaluator.to_dict) of version 2"),
    (_set(["options"], []), "options must be a dict, got []"),
    (_set(["options", "from_logits"], "no"), "from_logits must be true or false, got 'no'"),
    (_set(["options", "topk"], "12"), "topk must be a list of ints, got '12'"),
    (_set(["options", "topk"], [1, 2.0]), "topk must hold positive ints of at most 2**63 - 1 "
                                           "(a k of at least C gives 1), got 2.0"),
    (_set(["options", "weight"], [1.0, "NaN", 1.0]), "weight must have a real dtype"),
    (_set(["options", "weight"], [1.0, 2.0]), "weight has 2 entries for 3 classes"),
    (_set(["options", "ignore_index"], True), "ignore_index must be an int or null, got True"),
    (_set(["options", "eps"], "0.1"), "eps must be a number or null, got '0.1'"),
    (_set(["options", "eps"], 0.75), "eps must be a number in [0, 0.5), got 0.75"),
    (_set(["options", "axis"], None), "axis must be an int, got None"),
    (_set(["n_classes"], True), "n_classes must be an int or null, got True"),
    (_set(["n_classes"], 0), "n_classes 0 and target_kind 'labels' must be a positive int"),
    (_set(["target_kind"], "hard"), "n_classes 3 and target_kind 'hard' must be"),
    (_set(["target_kind"], None), "n_classes 3 and target_kind None must be"),
    (_set(["sums"], [1, 2]), "sums must be a dict, got [1, 2]"),
    (_set(["sums", "loss"], KeyError), "sums must have the keys"),
    (_set(["sums", "extra"], 1.0), "sums must have the keys"),
    (_set(["sums", "loss"], "nan"), "sums.loss must hold numbers"),
    (_set(["sums", "loss"], None), "sums.loss must hold numbers"),
    (_set(["sums", "count"], 2.5),
     "sums.count must be a whole number of rows in [0, 9007199254740992], got 2.5"),
    (_set(["sums", "count"], "Infinity"), "sums.count must be a whole number of rows"),
    (_set(["sums", "count"], -1),
     "sums.count must be a whole number of rows in [0, 9007199254740992], got -1.0"),
    (_set(["sums", "correct@2"], KeyError), "predicted, correct@1, correct@2, got loss"),
    (_set(["sums", "correct@2"], "x"), "sums.correct@2 must hold numbers"),
    (_set(["bins", "weight"], [0.0] * 14), "bins.weight must hold 15 numbers, got 14"),
    (_set(["bins", "weight"], {}), "weight must be a list of 15 numbers, got {}"),
    (_set(["bins", "extra"], []), "bins must have the keys weight, confidence_sum"),
    (_set(["bins", "correct_sum", 3], False),
     'bins.correct_sum must hold numbers (or "NaN", "Infinity", "-Infinity"), got False'),
    (_set(["n_classes"], KeyError), "invalid Evaluator state: missing 'n_classes'"),
    (_set(["options", "per_class"], 1), "per_class must be true or false, got 1"),
    (_set(["options", "confusion"], None), "confusion must be true or false, got None"),
    (_set(["options", "prior"], "a"), "prior must be a list of numbers or null, got 'a'"),
    (_set(["options", "prior"], [0.5, 0.5]), "prior has 2 entries for 3 classes"),
    (_set(["options", "prior"], KeyError), "invalid Evaluator state: missing 'prior'"),
    (_set(["options", "per_class"], True), "class_table must be a list of 45 numbers, got None"),
    (_set(["n_groups"], 1.0), "n_groups must be an int, got 1.0"),
    (_set(["n_groups"], -1), "n_groups must be in [0, 16777216], got -1"),
    (_set(["n_groups"], 2), "tables.group_table must hold 30 numbers, got 0"),
    (_set(["tables"], []), "tables must be a dict, got []"),
    (_set(["tables"], KeyError), "invalid Evaluator state: missing 'tables'"),
    (_set(["tables", "histogram"], KeyError), "invalid Evaluator state: missing 'histogram'"),
    (_set(["tables", "histogram"], [0.0] * 3), "tables.histogram must hold"),
    (_set(["tables", "class_mass"], [0.0] * 2), "tables.class_mass must hold 3 numbers, got 2"),
    (_set(["tables", "class_mass", 1], "x"), "tables.class_mass must hold numbers"),
    (_set(["tables", "class_table"], [0.0] * 3),
     "tables.class_table must be null for these options"),
    (_set(["tables", "confusion"], [0.0] * 9), "tables.confusion must be null for these options"),
], ids=itertools.count())
def test_from_dict_checks_every_field(change, message):
    """A hand-edited or damaged state raises ValueError saying which field is wrong (never
    an AttributeError, and never a state that is silently taken)."""
    state = _state_with(change)
    with pytest.raises(ValueError) as info:
        fastxent.Evaluator.from_dict(state)
    assert message in str(info.value)
    if message.startswith("not an"):
        return
    assert str(info.value).startswith("invalid Evaluator state: ")


def test_from_dict_n_threads_error_is_not_a_state_error():
    state = fastxent.Evaluator().to_dict()
    with pytest.raises(ValueError, match="^n_threads=0 is invalid"):
        fastxent.Evaluator.from_dict(state, n_threads=0)
