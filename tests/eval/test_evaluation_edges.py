"""Edge cases of the evaluation's tables, compare and reports found in review: ties with class
0, empty tables in reports, NaN rows in compare, huge priors, tampered states, infinite
differences, tiny losses. Each asserts the correct behaviour."""

import json
import math

import numpy as np
import pytest

import fastxent
from fastxent import cli

# --- 1. ties with class 0 in short logit rows: the written prediction is not the first arg-max


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_confusion_ties_go_to_the_lower_index_in_short_rows(dtype):
    # Rows of C <= 64 logits where class 0 ties for the maximum: np.argmax gives 0.
    x = np.array([[1.0, 1.0, 0.0, 0.0], [3.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]], dtype)
    y = np.array([0, 3, 0])
    r = fastxent.evaluate(x, y, per_class=True, confusion=True)
    expected = np.zeros((4, 4))
    for label, pred in zip(y, np.argmax(x, axis=1), strict=True):
        expected[label, pred] += 1
    assert r.accuracy == pytest.approx(2 / 3)          # the rank is right ...
    np.testing.assert_array_equal(r.confusion, expected)   # ... the prediction is not
    # precision of class 0: predicted 3 times, right twice
    assert r.per_class.precision[0] == pytest.approx(2 / 3)


def test_short_and_long_rows_agree_on_tied_predictions():
    x = np.zeros((6, 4))
    y = np.array([0, 1, 2, 3, 0, 1])
    short = fastxent.evaluate(x, y, confusion=True).confusion
    long = fastxent.evaluate(np.zeros((6, 100)), y, confusion=True).confusion[:4, :4]
    np.testing.assert_array_equal(short, long)


def test_compare_accuracy_diff_and_mcnemar_with_tied_logits():
    a = np.array([[1.0, 1.0, 0.0]] * 4)       # argmax 0: right
    b = np.array([[0.0, 1.0, 0.0]] * 4)       # argmax 1: wrong
    y = np.zeros(4, dtype=np.int64)
    r = fastxent.compare(a, b, y)
    assert r.a.accuracy - r.b.accuracy == 1.0
    assert r.accuracy_diff == 1.0
    assert (r.mcnemar.only_a_correct, r.mcnemar.only_b_correct) == (4, 0)


# --- 2. report / plot crash on an empty slice table


@pytest.mark.parametrize("kind", ["per_class", "groups"])
def test_plot_and_report_with_every_row_ignored(tmp_path, kind):
    pytest.importorskip("matplotlib")
    from fastxent._eval import report
    x = np.random.default_rng(0).normal(size=(20, 4))
    y = np.full(20, -100)
    extra = {"per_class": True} if kind == "per_class" else {"groups": np.arange(20) % 3}
    r = fastxent.evaluate(x, y, ignore_index=-100, **extra)
    report.write_plot(r, tmp_path / "a.png")
    report.write_report(r, tmp_path / "a.html")
    c = fastxent.compare(x, 2 * x, y, ignore_index=-100, **extra)
    report.write_plot(c, tmp_path / "c.png")


def test_cli_report_with_every_row_ignored_is_not_a_traceback(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))
    np.save("y.npy", np.full(20, -100))
    status = cli.main(["eval", "x.npy", "y.npy", "--ignore-index", "-100", "--per-class",
                       "--report", "r.html", "--plot", "r.png", "--no-progress"])
    assert status == 0


# --- 3. compare with a NaN row: accuracy_diff is not a.accuracy - b.accuracy


def test_compare_nan_row_accuracy_diff_is_nan_like_the_accuracies():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 4))
    b = rng.normal(size=(30, 4))
    a[0, 0] = np.nan
    y = rng.integers(0, 4, 30)
    r = fastxent.compare(a, b, y)
    assert math.isnan(r.a.accuracy)
    # documented: accuracy_diff = a.accuracy - b.accuracy
    assert math.isnan(r.accuracy_diff)


# --- 4. a finite prior whose sum overflows


def test_prior_of_huge_finite_values():
    x = np.zeros((4, 2))
    y = np.array([0, 1, 0, 1])
    r = fastxent.evaluate(x, y, prior=[1e308, 1e308])
    assert r.prior_loss == pytest.approx(math.log(2))   # got inf (prior / inf = 0)


# --- 5. / 6. tampered states accepted by from_dict


def _evaluator_state():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    return fastxent.Evaluator(per_class=True).update(x, y, groups=np.arange(40) % 4).to_dict()


def test_evaluator_from_dict_rejects_a_count_that_is_not_an_int64():
    state = _evaluator_state()
    state["sums"]["count"] = 1e300          # whole and finite, but result().count = -2**63
    with pytest.raises(ValueError):
        fastxent.Evaluator.from_dict(state)


@pytest.mark.parametrize("value", ["NaN", -5.0, 2.5, 1e30])
def test_evaluator_from_dict_checks_table_counts(value):
    state = _evaluator_state()
    state["tables"]["group_table"][fastxent.Evaluator()._slice_names().index("count")] = value
    with pytest.raises(ValueError):
        fastxent.Evaluator.from_dict(json.loads(json.dumps(state)))


@pytest.mark.parametrize("field,value", [("count", -3.5), ("only_a_correct", -3.0),
                                         ("only_a_correct", "NaN")])
def test_comparator_from_dict_checks_paired_counts(field, value):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    state = fastxent.Comparator().update(x, 2 * x, y).to_dict()
    state["paired"][field] = value
    with pytest.raises(ValueError, match="Comparator state"):
        fastxent.Comparator.from_dict(state)


# --- 7. summary of an infinite loss difference


def test_comparison_summary_of_an_infinite_difference():
    a = np.array([[0.0, 0.0, -np.inf]] * 3)
    b = np.zeros((3, 3))
    r = fastxent.compare(a, b, np.full(3, 2))
    assert r.loss_diff == math.inf
    assert "difference nan" not in r.summary()


# --- 8. concentration when every loss is below 2**-30 (bin 0)


def test_concentration_of_tiny_losses_sees_the_few_rows_that_carry_them():
    # 10 of 1000 rows carry ~all of the (tiny) loss: exact worst-1% share ~ 1.0.
    x = np.zeros((1000, 2))
    x[:, 0] = 60.0                  # loss ~ 9e-27
    x[:10, 0] = 25.0                # loss ~ 1.4e-11 (< 2**-30)
    r = fastxent.evaluate(x, np.zeros(1000, dtype=np.int64))
    assert r.concentration[0.01] > 0.5           # got 0.01 ("equal losses")
