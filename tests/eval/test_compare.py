"""``fastxent.compare``, ``Comparator`` and ``compare_files`` (issue 15) against independent
float64 references: the paired loss and accuracy differences with their standard errors
(``scipy.stats.sem`` of the per-row differences without weights, the delta method with
them), the normal p-value (close to ``scipy.stats.ttest_rel`` for many rows), McNemar's exact
test (``scipy.stats.binomtest``), the per-class differences; chunks, merges, strict-JSON
states, threads, and the files with groups, checkpoints and resumption.
"""

import json
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastxent
from eval_reference import ratio_se, rows_for, spec_options
from helpers import BIG_ROWS, StopRun, assert_close_nested, same, stop_after

DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}
Z95 = scipy.stats.norm.ppf(0.975)

SPECS = {
    "plain": {},
    "sample_weight": {"sample_weight": "s"},
    "class_weight": {"weight": "w"},
    "ignore_index": {"ignore_index": -100},
    "everything": {"weight": "w", "sample_weight": "s", "ignore_index": 2},
    "soft": {"soft": True},
    "soft_sample_weight": {"soft": True, "sample_weight": "s"},
}


def make_pair(seed, dtype, from_logits, spec, n_rows=600, n_classes=6, noise=1.0):
    """Two models' outputs for the same rows (B is A plus noise: paired and close), the target
    and the options `spec` asks for ("s": sample weights, some 0; "w": class weights; every
    fifth label ``ignore_index``; soft targets)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n_rows, n_classes))
    y = rng.integers(0, n_classes, n_rows)
    z[np.arange(n_rows), y] += 1.5
    za, zb = z, z + rng.normal(0.0, noise, z.shape)
    kw = spec_options(rng, spec, n_rows, n_classes)
    if spec.get("soft"):
        target = scipy.special.softmax(z + rng.normal(0.0, 1.0, z.shape), axis=1).astype(dtype)
    else:
        target = y
        if "ignore_index" in kw:
            target = y.copy()
            target[::5] = kw["ignore_index"]

    def outputs(v):
        return (v if from_logits else scipy.special.softmax(v, axis=1)).astype(dtype)

    return outputs(za), outputs(zb), target, kw


def mcnemar_reference(correct_a, correct_b, s=None):
    """McNemar's counts over the rows (of non-zero sample weight `s`) and exact p-value."""
    kept = np.ones(len(correct_a), bool) if s is None else s != 0
    only_a = int(np.sum(correct_a & ~correct_b & kept))
    only_b = int(np.sum(correct_b & ~correct_a & kept))
    n = only_a + only_b
    p = 1.0 if n == 0 else scipy.stats.binomtest(only_a, n, 0.5).pvalue
    return only_a, only_b, p


def expected_comparison(ra, rb):
    """The paired statistics of two models' counted rows `ra`, `rb` (reference_rows)."""
    s, w_y = ra["s"], ra["w_y"]
    d = s * (ra["loss"] - rb["loss"])
    b = s * w_y
    diff = d.sum() / b.sum()
    se = ratio_se(d, b)
    out = {"loss_diff": diff, "loss_diff_se": se,
           "loss_diff_ci": (diff - Z95 * se, diff + Z95 * se),
           "loss_diff_p": 2.0 * scipy.stats.norm.sf(abs(diff / se)),
           "count": len(s)}
    if ra["y"] is not None:
        c = s * (ra["correct"] - rb["correct"])
        acc = c.sum() / s.sum()
        acc_se = ratio_se(c, s)
        out.update(accuracy_diff=acc, accuracy_diff_se=acc_se,
                   accuracy_diff_ci=(acc - Z95 * acc_se, acc + Z95 * acc_se))
        out["mcnemar"] = mcnemar_reference(ra["correct"] == 1, rb["correct"] == 1, ra["s"])
    else:
        out.update(accuracy_diff=None, accuracy_diff_se=None, accuracy_diff_ci=None,
                   mcnemar=None)
    return out


def check(got, want, rtol, what):
    if want is None:
        assert got is None, what
    elif isinstance(want, tuple):
        assert len(got) == len(want), what
        for g, w in zip(got, want, strict=True):
            check(g, w, rtol, what)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-6, equal_nan=True,
                                   err_msg=what)


@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_compare_matches_the_reference(dtype, from_logits, spec_name):
    xa, xb, target, kw = make_pair(1, dtype, from_logits, SPECS[spec_name])
    r = fastxent.compare(xa, xb, target, from_logits=from_logits, topk=(1, 2), **kw)
    ra, rb = rows_for(xa, target, kw, from_logits), rows_for(xb, target, kw, from_logits)
    want = expected_comparison(ra, rb)
    rtol = RTOL[np.dtype(dtype)]
    for name in ("loss_diff", "loss_diff_se", "loss_diff_ci", "accuracy_diff",
                 "accuracy_diff_se", "accuracy_diff_ci"):
        check(getattr(r, name), want[name], 10 * rtol if "se" in name or "ci" in name else rtol,
              name)
    # the p-value of z = diff / se: float32 rounding of z moves it by about its own rtol
    check(r.loss_diff_p, want["loss_diff_p"], 1e-3 if dtype == np.float32 else 1e-9,
          "loss_diff_p")
    assert r.count == want["count"] and type(r.count) is int
    if want["mcnemar"] is None:
        assert r.mcnemar is None
    else:
        only_a, only_b, p = want["mcnemar"]
        assert (r.mcnemar.only_a_correct, r.mcnemar.only_b_correct) == (only_a, only_b)
        assert type(r.mcnemar.only_a_correct) is int
        assert r.mcnemar.p_value == pytest.approx(p, rel=1e-12)
        assert only_a + only_b > 0
    # each model's evaluation is evaluate's
    options = dict(from_logits=from_logits, topk=(1, 2), **kw)
    assert same(r.a.to_dict(), fastxent.evaluate(xa, target, **options).to_dict())
    assert same(r.b.to_dict(), fastxent.evaluate(xb, target, **options).to_dict())
    # (float32: the paired denominator takes the class weights in float64, the loss in float32)
    assert r.loss_diff == pytest.approx(r.a.loss - r.b.loss, rel=rtol, abs=1e-15)
    if r.accuracy_diff is not None:
        assert r.accuracy_diff == pytest.approx(r.a.accuracy - r.b.accuracy, abs=1e-14)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_unweighted_se_is_the_sem_of_the_differences(dtype):
    # A a little noisier than B: a difference the test sees, p of about 0.01
    xa, xb, y, _ = make_pair(2, np.float64, True, {}, n_rows=5000, n_classes=5, noise=0.5)
    xa = (xa + np.random.default_rng(3).normal(0.0, 0.6, xa.shape)).astype(dtype)
    xb = xb.astype(dtype)
    r = fastxent.compare(xa, xb, y, topk=(1,))
    ra, rb = rows_for(xa, y, {}, True), rows_for(xb, y, {}, True)
    la, lb = ra["ce"], rb["ce"]
    rtol = RTOL[np.dtype(dtype)]
    assert r.loss_diff == pytest.approx(np.mean(la) - np.mean(lb), rel=10 * rtol)
    assert r.loss_diff_se == pytest.approx(scipy.stats.sem(la - lb), rel=10 * rtol)
    z = r.loss_diff / r.loss_diff_se
    assert r.loss_diff_p == pytest.approx(2.0 * scipy.stats.norm.sf(abs(z)), rel=1e-12)
    # for 5000 rows the normal test is the paired t-test
    t_test = scipy.stats.ttest_rel(la, lb)
    assert 1e-3 < t_test.pvalue < 0.05
    assert r.loss_diff_p == pytest.approx(t_test.pvalue, rel=0.01)
    ca, cb = ra["correct"], rb["correct"]
    assert r.accuracy_diff == pytest.approx(np.mean(ca) - np.mean(cb), abs=1e-15)
    assert r.accuracy_diff_se == pytest.approx(scipy.stats.sem(ca - cb), rel=1e-12)
    only_a, only_b, p = mcnemar_reference(ca == 1, cb == 1)
    assert (r.mcnemar.only_a_correct, r.mcnemar.only_b_correct) == (only_a, only_b)
    assert r.mcnemar.p_value == pytest.approx(p, rel=1e-12)


def test_mcnemar_counts_rows_not_weights():
    """The discordant counts are counts of counted rows: sample weights do not enter them,
    except that rows of weight 0 are left out; ignored rows are not counted."""
    xa, xb, y, kw = make_pair(3, np.float64, True, {"sample_weight": "s",
                                                    "ignore_index": -1})
    r = fastxent.compare(xa, xb, y, **kw)
    ra, rb = rows_for(xa, y, kw, True), rows_for(xb, y, kw, True)
    only_a, only_b, p = mcnemar_reference(ra["correct"] == 1, rb["correct"] == 1, ra["s"])
    assert (r.mcnemar.only_a_correct, r.mcnemar.only_b_correct) == (only_a, only_b)
    assert r.mcnemar.p_value == pytest.approx(p, rel=1e-12)
    positive = np.where(np.asarray(kw["sample_weight"]) != 0, 1.0, 0.0)
    assert positive.min() == 0                   # the case has rows of weight 0
    unweighted = fastxent.compare(xa, xb, y, ignore_index=-1, sample_weight=positive)
    assert unweighted.mcnemar == r.mcnemar
    assert r.accuracy_diff != unweighted.accuracy_diff


def test_hand_worked_mcnemar():
    """A right on 9 rows where B is wrong, B right on 2 where A is wrong: p = 2 P(X <= 2),
    X ~ Bin(11, 1/2) = 2 * 67 / 2048."""
    n = 30
    y = np.zeros(n, np.int64)
    xa = np.zeros((n, 2))
    xb = np.zeros((n, 2))
    xa[:, 0], xb[:, 0] = 1.0, 1.0                # both right ...
    xb[:9] = [0.0, 1.0]                          # ... but B wrong on 9
    xa[9:11] = [0.0, 1.0]                        # ... and A wrong on 2
    xa[11:14] = xb[11:14] = [0.0, 1.0]           # both wrong on 3
    r = fastxent.compare(xa, xb, y, topk=(1,))
    assert (r.mcnemar.only_a_correct, r.mcnemar.only_b_correct) == (9, 2)
    assert r.mcnemar.p_value == pytest.approx(2 * 67 / 2048, rel=1e-12)
    assert r.accuracy_diff == pytest.approx(7 / 30, rel=1e-14)
    assert r.mcnemar.to_dict() == {"only_a_correct": 9, "only_b_correct": 2,
                                   "p_value": r.mcnemar.p_value}


def test_identical_models():
    xa, _, y, _ = make_pair(4, np.float64, True, {})
    r = fastxent.compare(xa, xa.copy(), y)
    assert r.loss_diff == 0.0 and r.loss_diff_se == 0.0 and r.loss_diff_ci == (0.0, 0.0)
    assert r.loss_diff_p == 1.0                  # no difference, no spread
    assert r.accuracy_diff == 0.0 and r.accuracy_diff_se == 0.0
    assert (r.mcnemar.only_a_correct, r.mcnemar.only_b_correct, r.mcnemar.p_value) == (0, 0, 1.0)
    assert r.summary().startswith(f"loss A {r.a.loss:.3f} vs B {r.b.loss:.3f} nats: no "
                                  f"difference")


def test_a_constant_difference_has_p_0():
    """Every row's loss differs by the same amount: no spread (to the rounding of the sums of
    squares), a certain difference."""
    xa = np.zeros((50, 2))
    xb = xa.copy()
    xb[:, 1] = 1.0                               # label 0: B's loss log(1 + e) on every row
    r = fastxent.compare(xa, xb, np.zeros(50, np.int64))
    assert r.loss_diff == pytest.approx(np.log(2) - np.log1p(np.e))
    assert r.loss_diff_se <= 1e-7 * abs(r.loss_diff) and r.loss_diff_p < 1e-10


def test_soft_targets_have_no_accuracy():
    xa, xb, t, _ = make_pair(5, np.float64, True, {"soft": True})
    r = fastxent.compare(xa, xb, t)
    assert r.accuracy_diff is None and r.accuracy_diff_se is None
    assert r.accuracy_diff_ci is None and r.mcnemar is None
    assert r.per_class_loss_diff is None and r.per_class_accuracy_diff is None
    assert math.isfinite(r.loss_diff_p)
    with pytest.raises(ValueError, match="per_class and confusion need integer class labels"):
        fastxent.compare(xa, xb, t, per_class=True)


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_per_class_differences(dtype, from_logits):
    xa, xb, y, kw = make_pair(6, dtype, from_logits, SPECS["everything"], n_rows=800)
    r = fastxent.compare(xa, xb, y, from_logits=from_logits, per_class=True, **kw)
    ra, rb = rows_for(xa, y, kw, from_logits), rows_for(xb, y, kw, from_logits)
    keys = np.unique(ra["y"])
    assert 2 not in keys                          # the ignored label is no class's
    np.testing.assert_array_equal(r.a.per_class.keys, keys)
    np.testing.assert_array_equal(r.b.per_class.keys, keys)
    s, w_y = ra["s"], ra["w_y"]
    loss_diff, recall_diff = [], []
    for c in keys:
        m = ra["y"] == c
        mean = [np.sum(s[m] * rows["loss"][m]) / np.sum(s[m] * w_y[m]) for rows in (ra, rb)]
        recall = [np.sum(s[m] * rows["correct"][m]) / np.sum(s[m]) for rows in (ra, rb)]
        loss_diff.append(mean[0] - mean[1])
        recall_diff.append(recall[0] - recall[1])
    rtol = RTOL[np.dtype(dtype)]
    scale = np.max(np.abs([rows["loss"].max() for rows in (ra, rb)]))
    np.testing.assert_allclose(r.per_class_loss_diff, loss_diff, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(r.per_class_accuracy_diff, recall_diff, rtol=1e-12,
                               atol=1e-14)
    assert np.any(np.array(recall_diff) != 0)


def test_groups_give_each_model_its_table():
    xa, xb, y, kw = make_pair(7, np.float64, True, {"sample_weight": "s"}, n_rows=400)
    groups = np.random.default_rng(8).choice([1, 4, 6], 400)
    r = fastxent.compare(xa, xb, y, groups=groups, **kw)
    for model, x in ((r.a, xa), (r.b, xb)):
        assert same(model.groups.to_dict(),
                    fastxent.evaluate(x, y, groups=groups, **kw).groups.to_dict())
    assert r.a.groups.keys.tolist() == [1, 4, 6]


def test_shapes_must_match():
    xa, xb, y, _ = make_pair(9, np.float64, True, {}, n_rows=50, n_classes=4)
    comparator = fastxent.Comparator()
    with pytest.raises(ValueError, match=r"input_a and input_b must have the same shape, got "
                                         r"\(50, 4\) and \(50, 5\)"):
        comparator.update(xa, np.zeros((50, 5)), y)
    with pytest.raises(ValueError):
        comparator.update(xa, np.zeros((51, 4)), y)
    with pytest.raises(ValueError, match="groups"):
        comparator.update(xa, xb, y, groups=np.zeros(49, np.int64))
    assert comparator.n_classes is None and comparator.result().count == 0   # nothing added
    # float32 and float64 models compare: each computes in its own dtype
    mixed = fastxent.compare(xa.astype(np.float32), xb, y)
    assert same(mixed.a.to_dict(), fastxent.evaluate(xa.astype(np.float32), y).to_dict())
    assert same(mixed.b.to_dict(), fastxent.evaluate(xb, y).to_dict())


def test_nan_row_makes_the_loss_difference_nan():
    xa, xb, y, _ = make_pair(10, np.float64, True, {}, n_rows=100)
    xa[3, 0] = np.nan
    r = fastxent.compare(xa, xb, y)
    assert math.isnan(r.loss_diff) and math.isnan(r.loss_diff_se) and math.isnan(r.a.loss)
    assert math.isfinite(r.b.loss) and r.count == 100


# --------------------------------------------------------------------------------------------
# Comparator: chunks, merge, state, threads

OPTIONS = dict(topk=(1, 3), per_class=True, prior=[1.0, 1.0, 2.0, 4.0, 4.0, 4.0])


def _case(seed, dtype):
    xa, xb, y, kw = make_pair(seed, dtype, True, SPECS["everything"], n_rows=900)
    groups = np.random.default_rng(seed + 1).integers(0, 5, 900)
    groups[600:] += 10                           # larger ids only in later chunks
    return xa, xb, y, kw.pop("sample_weight"), dict(OPTIONS, **kw), groups


def assert_close_results(got, want, rtol=1e-12, atol=1e-15, where="result"):
    """ComparisonResult.to_dict() values equal up to rtol (strings, None, ints exactly)."""
    if hasattr(got, "to_dict"):
        got, want = got.to_dict(), want.to_dict()
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_close_results(got[key], want[key], rtol, atol, f"{where}[{key!r}]")
    elif want is None or isinstance(want, (str, bool, int)):
        assert got == want, where
    elif isinstance(want, list) and want and isinstance(want[0], (list, dict)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close_results(g, w, rtol, atol, f"{where}[{i}]")
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=where)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_chunks_equal_one_update(dtype):
    xa, xb, y, s, options, groups = _case(11, dtype)
    whole = fastxent.compare(xa, xb, y, sample_weight=s, groups=groups, **options)
    comparator = fastxent.Comparator(**options)
    bounds = [0, 1, 1, 250, 599, 600, 900]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        comparator.update(xa[a:b], xb[a:b], y[a:b], sample_weight=s[a:b], groups=groups[a:b])
    assert_close_results(comparator.result(), whole)
    assert comparator.result().count == whole.count == int(np.sum(y != options[
        "ignore_index"]))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_merge_of_two_halves_equals_the_whole(dtype):
    xa, xb, y, s, options, groups = _case(12, dtype)
    whole = fastxent.compare(xa, xb, y, sample_weight=s, groups=groups, **options)
    first = fastxent.Comparator(**options).update(xa[:450], xb[:450], y[:450], s[:450],
                                                  groups[:450])
    second = fastxent.Comparator(**options).update(xa[450:], xb[450:], y[450:], s[450:],
                                                   groups[450:])
    assert_close_results(first.merge(second).result(), whole)
    with pytest.raises(TypeError, match="can only merge a Comparator"):
        first.merge(fastxent.Evaluator(**options))
    with pytest.raises(ValueError, match="options differ"):
        first.merge(fastxent.Comparator())


def _json_round_trip(comparator):
    text = json.dumps(comparator.to_dict(), allow_nan=False)
    return fastxent.Comparator.from_dict(json.loads(text))


@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_state_round_trips_through_strict_json(dtype, with_nan):
    xa, xb, y, s, options, groups = _case(13, dtype)
    if with_nan:
        xb[7, 1] = np.nan
    comparator = fastxent.Comparator(**options).update(xa[:500], xb[:500], y[:500], s[:500],
                                                       groups[:500])
    restored = _json_round_trip(comparator)
    assert restored.to_dict() == comparator.to_dict()
    assert same(restored.result().to_dict(), comparator.result().to_dict())
    comparator.update(xa[500:], xb[500:], y[500:], s[500:], groups[500:])
    restored.update(xa[500:], xb[500:], y[500:], s[500:], groups[500:])
    assert same(restored.result().to_dict(), comparator.result().to_dict())


def test_state_round_trip_soft_targets_and_empty():
    xa, xb, t, _ = make_pair(14, np.float64, True, {"soft": True}, n_rows=60)
    comparator = fastxent.Comparator().update(xa, xb, t)
    restored = _json_round_trip(comparator)
    assert restored.to_dict() == comparator.to_dict()
    assert same(restored.result().to_dict(), comparator.result().to_dict())
    empty = fastxent.Comparator(per_class=True)
    again = _json_round_trip(empty)
    assert again.to_dict() == empty.to_dict() and again.result().count == 0


def test_corrupt_states_are_refused():
    xa, xb, y, _ = make_pair(15, np.float64, True, {}, n_rows=60)
    state = fastxent.Comparator().update(xa, xb, y).to_dict()
    with pytest.raises(ValueError, match="not a Comparator state"):
        fastxent.Comparator.from_dict(state["a"])
    bad = json.loads(json.dumps(state))
    del bad["paired"]["diff"]
    with pytest.raises(ValueError, match="invalid Comparator state"):
        fastxent.Comparator.from_dict(bad)
    bad = json.loads(json.dumps(state))
    bad["b"]["options"]["ignore_index"] = 5
    with pytest.raises(ValueError, match="its two evaluators differ"):
        fastxent.Comparator.from_dict(bad)


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_results_do_not_depend_on_the_thread_count(dtype, from_logits):
    xa, xb, y, kw = make_pair(16, dtype, from_logits, SPECS["everything"], n_rows=BIG_ROWS,
                              n_classes=5)
    groups = np.random.default_rng(17).integers(0, 30, BIG_ROWS)
    options = dict(from_logits=from_logits, per_class=True, groups=groups, **kw)
    one = fastxent.compare(xa, xb, y, n_threads=1, **options)
    two = fastxent.compare(xa, xb, y, n_threads=2, **options)
    assert same(one.to_dict(), two.to_dict())


# --------------------------------------------------------------------------------------------
# compare_files


@pytest.fixture
def files(tmp_path):
    """a.npy (float32), b.npy (float64), labels.npy, groups.npy of 1000 rows, 6 classes."""
    xa, xb, y, _ = make_pair(21, np.float64, True, {}, n_rows=1000)
    y = y.copy()
    y[::9] = -1
    groups = np.random.default_rng(22).integers(0, 7, 1000).astype(np.int32)
    arrays = {"a": xa.astype(np.float32), "b": xb, "labels": y, "groups": groups}
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value)
    paths = {name: str(tmp_path / f"{name}.npy") for name in arrays}
    return tmp_path, paths, arrays


FILE_OPTIONS = dict(topk=(1, 2), ignore_index=-1, per_class=True,
                    prior=[2.0, 2.0, 1.0, 1.0, 1.0, 1.0])


def _chunked(arrays, chunk_rows, **options):
    comparator = fastxent.Comparator(**options)
    for a in range(0, 1000, chunk_rows):
        b = a + chunk_rows
        comparator.update(arrays["a"][a:b], arrays["b"][a:b], arrays["labels"][a:b],
                          groups=arrays["groups"][a:b])
    return comparator.result()


def test_compare_files_equals_compare(files):
    _, paths, arrays = files
    got = fastxent.compare_files(paths["a"], paths["b"], paths["labels"],
                                 groups=paths["groups"], chunk_rows=64, **FILE_OPTIONS)
    assert same(got.to_dict(), _chunked(arrays, 64, **FILE_OPTIONS).to_dict())
    want = fastxent.compare(arrays["a"], arrays["b"], arrays["labels"], groups=arrays["groups"],
                            **FILE_OPTIONS)
    assert_close_results(got, want)
    assert got.a.groups.keys.tolist() == list(range(7))
    # one chunk: bit for bit
    whole = fastxent.compare_files(paths["a"], paths["b"], paths["labels"],
                                   groups=paths["groups"], **FILE_OPTIONS)
    assert same(whole.to_dict(), want.to_dict())


@pytest.mark.parametrize("n_chunks", [1, 6])
def test_compare_files_resumes_from_its_checkpoint(files, monkeypatch, n_chunks):
    tmp_path, paths, _ = files
    state = tmp_path / "state.json"
    args = (paths["a"], paths["b"], paths["labels"])
    options = dict(FILE_OPTIONS, groups=paths["groups"], chunk_rows=64)
    plain = fastxent.compare_files(*args, **options)
    with monkeypatch.context() as patch:
        stop_after(patch, n_chunks)
        with pytest.raises(StopRun):
            fastxent.compare_files(*args, checkpoint=state, checkpoint_interval=0, **options)
    saved = json.loads(state.read_text())
    assert saved["complete"] is False and saved["next_row"] == 64 * n_chunks
    assert set(saved["inputs"]) >= {"logits_a", "logits_b", "labels", "groups"}
    resumed = fastxent.compare_files(*args, checkpoint=state, **options)
    assert same(resumed.to_dict(), plain.to_dict())
    assert json.loads(state.read_text())["complete"] is True
    # complete: the saved result, without reading the rows
    again = fastxent.compare_files(*args, checkpoint=state, **options)
    assert same(again.to_dict(), plain.to_dict())


def test_compare_files_checkpoint_of_another_run(files):
    tmp_path, paths, _ = files
    state = tmp_path / "state.json"
    args = (paths["a"], paths["b"], paths["labels"])
    options = dict(chunk_rows=64, ignore_index=-1, checkpoint=state)
    fastxent.compare_files(*args, **options)
    with pytest.raises(fastxent.EvalFileError, match="checkpoint of another run"):
        fastxent.compare_files(paths["b"], paths["a"], paths["labels"], **options)
    with pytest.raises(fastxent.EvalFileError, match="checkpoint of another run"):
        fastxent.compare_files(*args, groups=paths["groups"], **options)
    with pytest.raises(fastxent.EvalFileError, match=f"{state}: checkpoint of another run"):
        fastxent.evaluate_files(paths["a"], paths["labels"], **options)


def test_compare_files_with_an_inexact_prior_resumes(files, monkeypatch):
    tmp_path, paths, _ = files
    state = tmp_path / "state.json"
    args = (paths["a"], paths["b"], paths["labels"])
    options = dict(chunk_rows=100, ignore_index=-1, prior=np.arange(1.0, 7.0))
    plain = fastxent.compare_files(*args, **options)
    with monkeypatch.context() as patch:
        stop_after(patch, 3)
        with pytest.raises(StopRun):
            fastxent.compare_files(*args, checkpoint=state, checkpoint_interval=0, **options)
    resumed = fastxent.compare_files(*args, checkpoint=state, **options)
    assert same(resumed.to_dict(), plain.to_dict())


def test_compare_files_wrong_shapes_name_the_file(files):
    tmp_path, paths, _ = files
    np.save(tmp_path / "wide.npy", np.zeros((1000, 7), np.float32))
    np.save(tmp_path / "short.npy", np.zeros((999, 6), np.float32))
    wide, short = str(tmp_path / "wide.npy"), str(tmp_path / "short.npy")
    with pytest.raises(fastxent.EvalFileError) as info:
        fastxent.compare_files(paths["a"], wide, paths["labels"], ignore_index=-1)
    assert str(info.value).startswith(f"{wide}: shape (1000, 7), but {paths['a']} has shape "
                                      f"(1000, 6)")
    with pytest.raises(fastxent.EvalFileError) as info:
        fastxent.compare_files(wide, paths["a"], paths["labels"], ignore_index=-1)
    assert str(info.value).startswith(f"{paths['a']}: shape (1000, 6), but {wide}")
    with pytest.raises(fastxent.EvalFileError, match="short.npy"):
        fastxent.compare_files(paths["a"], short, paths["labels"], ignore_index=-1)
    np.save(tmp_path / "bad_groups.npy", np.zeros(999, np.int64))
    with pytest.raises(fastxent.EvalFileError, match="bad_groups.npy: shape"):
        fastxent.compare_files(paths["a"], paths["b"], paths["labels"],
                               groups=str(tmp_path / "bad_groups.npy"), ignore_index=-1)
    np.save(tmp_path / "float_groups.npy", np.zeros(1000))
    with pytest.raises(fastxent.EvalFileError, match="float_groups.npy: dtype float64"):
        fastxent.compare_files(paths["a"], paths["b"], paths["labels"],
                               groups=str(tmp_path / "float_groups.npy"), ignore_index=-1)
    np.save(tmp_path / "negative_groups.npy", np.full(1000, -3, np.int64))
    with pytest.raises(fastxent.EvalFileError, match="negative_groups.npy"):
        fastxent.compare_files(paths["a"], paths["b"], paths["labels"],
                               groups=str(tmp_path / "negative_groups.npy"), ignore_index=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_blocks_of_rows_equal_one_pass(monkeypatch, dtype):
    """Comparator.update goes through ROW_BLOCK rows at a time (per-row outputs in small
    buffers): with blocks of 97 rows, the result equals one block's to rounding (float32's
    entropy and Brier sums to their documented 1e-6), with groups, sample weights, class
    weights and ignored rows spread over the blocks."""
    from fastxent._eval import compare as compare_module
    xa, xb, y, kw = make_pair(11, dtype, True, {"sample_weight": "s", "weight": "w",
                                                "ignore_index": -1}, n_rows=1000)
    groups = np.random.default_rng(12).integers(0, 9, 1000)
    whole = fastxent.compare(xa, xb, y, groups=groups, per_class=True, **kw)
    monkeypatch.setattr(compare_module, "ROW_BLOCK", 97)
    blocks = fastxent.compare(xa, xb, y, groups=groups, per_class=True, **kw)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    assert_close_nested(blocks.to_dict(), whole.to_dict(), rtol, 0.0, "result")
    assert blocks.mcnemar == whole.mcnemar and blocks.count == whole.count
    assert blocks.loss_diff != 0 and len(blocks.a.groups) == 9
    # a class axis that is not last is compared in one block
    strided = fastxent.compare(np.moveaxis(xa, 1, 0), np.moveaxis(xb, 1, 0), y, axis=0,
                               groups=groups, per_class=True, **kw)
    assert_close_nested(strided.to_dict(), whole.to_dict(), rtol, 0.0, "result")
