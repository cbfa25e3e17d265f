"""The options dataclasses: one normaliser (plain Python values, one message per option), frozen,
and one comparison that ``Evaluator.merge`` and checkpoint resumes both go through."""

import dataclasses
import math

import numpy as np
import pytest

import fastxent
from fastxent._api.multiclass import prepare
from fastxent._api.options import CrossEntropyOptions, EvaluationOptions, LossOptions
from fastxent._eval import checkpoint as _checkpoint

# ---- NumPy scalars and 0-d arrays become plain Python values ----------------------------------

NUMPY_VALUES = [
    (LossOptions, "from_logits", np.bool_(False), False),
    (LossOptions, "validate", np.array(True), True),
    (LossOptions, "ignore_index", np.float32(0.1), float(np.float32(0.1))),
    (LossOptions, "ignore_index", np.int8(-1), -1.0),
    (LossOptions, "label_smoothing", np.float32(0.1), float(np.float32(0.1))),
    (LossOptions, "label_smoothing", np.array(1), 1.0),
    (LossOptions, "eps", np.float16(0.25), 0.25),
    (LossOptions, "reduction", np.str_("sum"), "sum"),
    (LossOptions, "n_threads", np.int64(2), 2),
    (CrossEntropyOptions, "ignore_index", np.int64(-100), -100),
    (CrossEntropyOptions, "ignore_index", np.uint64(7), 7),
    (CrossEntropyOptions, "axis", np.int32(1), 1),
    (CrossEntropyOptions, "axis", np.array(-1), -1),
    (EvaluationOptions, "topk", np.array([5, 1, 5], np.uint8), (1, 5)),
]


@pytest.mark.parametrize("cls, name, value, plain", NUMPY_VALUES,
                         ids=lambda x: x.__name__ if isinstance(x, type) else None)
def test_numpy_values_become_plain_python_values(cls, name, value, plain):
    got = getattr(cls(**{name: value}), name)
    assert got == plain and type(got) is type(plain)
    if isinstance(got, tuple):
        assert all(type(k) is int for k in got)


def test_class_weights_become_read_only_float64():
    weight = np.array([1, 2, 3], np.int32)
    options = CrossEntropyOptions(weight=weight)
    assert options.weight.dtype == np.float64 and not options.weight.flags.writeable
    given = np.array([1.0, 2.0, 3.0])
    assert np.shares_memory(CrossEntropyOptions(weight=given).weight, given)    # read at once
    kept = EvaluationOptions(weight=given)
    assert not np.shares_memory(kept.weight, given)                              # an Evaluator's
    given[0] = 9.0
    assert kept.weight.tolist() == [1.0, 2.0, 3.0]


# ---- one message per option, naming it -----------------------------------------------------

BAD_VALUES = {
    (LossOptions, "from_logits"): [("False", TypeError), (1, TypeError), (None, TypeError),
                                   (np.array([True]), TypeError)],
    (LossOptions, "label_smoothing"): [(math.nan, ValueError), (math.inf, ValueError),
                                       (-0.1, ValueError), (1.5, ValueError),
                                       (True, ValueError), ("0.1", ValueError),
                                       (np.float32("nan"), ValueError)],
    (LossOptions, "eps"): [(math.nan, ValueError), (0.5, ValueError), (-1e-9, ValueError),
                           (np.False_, ValueError), ("small", ValueError)],
    (LossOptions, "ignore_index"): [(math.nan, ValueError), (10**400, ValueError),
                                    (True, TypeError), ("1", TypeError)],
    (LossOptions, "reduction"): [("average", ValueError), (None, ValueError)],
    (CrossEntropyOptions, "ignore_index"): [(2**63, ValueError), (-2**63 - 1, ValueError),
                                            (np.uint64(2**64 - 1), ValueError),
                                            (True, TypeError), (-1.0, TypeError),
                                            (np.float64(1), TypeError)],
    (CrossEntropyOptions, "axis"): [(True, TypeError), (1.5, TypeError), ("0", TypeError)],
    (EvaluationOptions, "topk"): [((), ValueError), ((0,), ValueError), ((1, 2**63), ValueError),
                                  ((np.True_,), TypeError), ((2.0,), TypeError),
                                  (5, TypeError)],
    (EvaluationOptions, "weight"): [([1.0, math.nan], ValueError), (np.ones((1, 3)), ValueError),
                                    (["a"], TypeError)],
}


@pytest.mark.parametrize("cls, name", list(BAD_VALUES),
                         ids=lambda x: x.__name__ if isinstance(x, type) else x)
def test_each_option_has_one_message(cls, name):
    """Every way an option can be wrong raises the error type its check documents, with one
    message that names the option and differs only in the value it shows."""
    messages = set()
    for value, error in BAD_VALUES[cls, name]:
        with pytest.raises(error) as info:
            cls(**{name: value})
        message = str(info.value)
        assert message.startswith(f"{name} must "), message
        messages.add(message.split(", got ")[0] if ", got " in message else message)
    if name != "weight":                  # 1-D and finite are two rules, with their own words
        assert len(messages) == 1, messages


def test_messages_show_plain_values():
    with pytest.raises(ValueError) as info:
        LossOptions(label_smoothing=np.float64(math.inf))
    assert str(info.value) == "label_smoothing must be a number in [0, 1], got inf"
    with pytest.raises(ValueError) as info:
        CrossEntropyOptions(ignore_index=np.uint64(2**63))
    assert str(info.value) == ("ignore_index must be None or an int that fits in int64 (labels "
                               f"are compared as int64), got {2**63}")


def test_the_public_functions_use_the_options_checks():
    x, y = np.zeros((2, 3)), np.array([0, 1])
    for call in (lambda **kw: fastxent.cross_entropy(x, y, **kw),
                 lambda **kw: fastxent.binary_cross_entropy(x, np.zeros((2, 3)), **kw),
                 lambda **kw: fastxent.evaluate(x, y, **kw)):
        with pytest.raises(ValueError, match=r"^eps must be a number in \[0, 0.5\), got nan$"):
            call(eps=np.float32("nan"))
        with pytest.raises(TypeError, match="^from_logits must be a bool, got 'no'$"):
            call(from_logits="no")


# ---- frozen --------------------------------------------------------------------------------

def test_options_cannot_be_changed():
    options = EvaluationOptions(weight=[1.0, 2.0], topk=(1,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.eps = 0.1
    with pytest.raises(ValueError, match="read-only"):
        options.weight[0] = 5.0
    with pytest.raises(TypeError):
        hash(options)                     # equal by value, so not hashable
    with pytest.raises(TypeError):
        EvaluationOptions(label_smoothing=0.1)          # fixed: the Evaluator's loss has none


def test_replace_checks_again():
    options = CrossEntropyOptions(weight=[1.0, 2.0])
    assert dataclasses.replace(options, reduction="sum").reduction == "sum"
    with pytest.raises(ValueError, match="^reduction must be one of"):
        dataclasses.replace(options, reduction="average")


# ---- one comparison ------------------------------------------------------------------------

def test_equality_compares_values_arrays_included():
    a = EvaluationOptions(weight=np.array([1, 2, 3], np.float32), eps=np.float64(0.25),
                          ignore_index=np.int8(-1), topk=[5, 1])
    b = EvaluationOptions(weight=[1, 2, 3], eps=0.25, ignore_index=-1, n_threads=1,
                          validate=False)          # validate, n_threads: no effect on a result
    assert a == b and not a.differences(b)
    c = EvaluationOptions(weight=[1, 2, 4], eps=0.25, ignore_index=-1)
    assert a != c
    assert a.differences(c) == [("weight", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])]
    assert a != EvaluationOptions(weight=[1, 2], eps=0.25, ignore_index=-1)
    assert a != EvaluationOptions(eps=0.25, ignore_index=-1)
    assert CrossEntropyOptions() != EvaluationOptions()       # different kinds of options
    assert LossOptions() == LossOptions(n_threads=-1)


def test_saved_options_rebuild_the_same_options():
    options = EvaluationOptions(weight=[0.5, 2.0], eps=1e-6, topk=(3, 1), from_logits=False,
                                per_class=True, prior=np.array([3, 1]))
    assert options.to_dict() == {"from_logits": False, "ignore_index": None, "eps": 1e-6,
                                 "weight": [0.5, 2.0], "axis": -1, "topk": [1, 3],
                                 "per_class": True, "confusion": False, "prior": [3.0, 1.0]}
    assert EvaluationOptions(**options.to_dict()) == options
    assert EvaluationOptions(**options.keywords()) == options


@pytest.fixture
def spied_differences(monkeypatch):
    """The calls of ``EvaluationOptions.differences``: (options, other options)."""
    calls = []
    differences = EvaluationOptions.differences

    def spy(self, other):
        calls.append((self, other))
        return differences(self, other)

    monkeypatch.setattr(EvaluationOptions, "differences", spy)
    return calls


def test_merge_goes_through_the_comparison(spied_differences):
    x, y = np.zeros((4, 3)), np.array([0, 1, 2, 1])
    a = fastxent.Evaluator(weight=np.array([1.0, 2.0, 3.0], np.float32)).update(x, y)
    b = fastxent.Evaluator(weight=[1, 2, 3]).update(x, y)
    a.merge(b)
    assert spied_differences == [(a.options, b.options)]
    with pytest.raises(ValueError) as info:
        a.merge(fastxent.Evaluator(weight=[1, 2, 4]))
    assert str(info.value) == ("cannot merge Evaluators whose options differ: "
                               "weight=[1.0, 2.0, 3.0] vs [1.0, 2.0, 4.0]")


def test_checkpoint_resume_goes_through_the_comparison(tmp_path, spied_differences):
    logits, labels = tmp_path / "logits.npy", tmp_path / "labels.npy"
    np.save(logits, np.arange(30.0).reshape(10, 3) % 7)
    np.save(labels, np.arange(10) % 3)
    state = tmp_path / "state.json"
    weight = np.array([1.0, 0.5, 2.0], np.float32)
    first = fastxent.evaluate_files(logits, labels, weight=weight, topk=np.array([2, 1]),
                                    checkpoint=state)
    assert not spied_differences                      # nothing to compare with yet
    again = fastxent.evaluate_files(logits, labels, weight=weight.tolist(), topk=(1, 2),
                                    checkpoint=state)
    assert (again.loss, again.topk) == (first.loss, first.topk)
    # the saved run's options, then the saved Evaluator's (through ==)
    assert len(spied_differences) == 2
    with pytest.raises(fastxent.EvalFileError) as info:
        fastxent.evaluate_files(logits, labels, weight=[1.0, 0.5, 3.0], topk=(1, 2),
                                checkpoint=state)
    assert "option weight was [1.0, 0.5, 2.0], now [1.0, 0.5, 3.0]" in str(info.value)


def test_checkpoint_records_the_options_but_the_axis():
    options = EvaluationOptions(ignore_index=np.int16(-1), topk=(5,))
    assert _checkpoint.recorded_options(options) == {"from_logits": True, "ignore_index": -1,
                                                     "eps": None, "weight": None, "topk": [5],
                                                     "per_class": False, "confusion": False,
                                                     "prior": None}


# ---- the callers pass the options object -----------------------------------------------------

def test_prepare_takes_the_options_object():
    x, y = np.zeros((2, 3)), np.array([0, 2])
    options = CrossEntropyOptions(weight=[1.0, 2.0, 4.0], reduction="sum")
    problem = prepare(x, y, options, sample_weight=np.array([1.0, 0.5]))
    assert problem.options is options and problem.denominator == 1.0 + 0.5 * 4.0
    with pytest.raises(TypeError):
        prepare(x, y, options, np.ones(2))            # the rest is keyword-only
