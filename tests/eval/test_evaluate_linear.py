"""``evaluate_linear`` and ``Evaluator.update_linear``: every metric from hidden states equals
``evaluate`` on the explicit logits (and the float64 reference), whole, chunked, streamed and
merged."""

import numpy as np
import pytest

import fastxent
from eval_reference import reference_evaluate

N_ROWS, N_FEATURES, N_CLASSES = 61, 5, 13
FLOAT_METRICS = ("loss", "perplexity", "accuracy", "entropy", "brier", "ece")
TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}


def make_case(dtype, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((N_ROWS, N_FEATURES)).astype(dtype)
    weight = rng.standard_normal((N_CLASSES, N_FEATURES)).astype(dtype)
    bias = rng.standard_normal(N_CLASSES).astype(dtype)
    labels = rng.integers(0, N_CLASSES, N_ROWS)
    labels[::7] = 2
    return hidden, weight, bias, labels


def logits_of(hidden, weight, bias):
    """The logits in the input's dtype, as the fused path computes them (one GEMM)."""
    return hidden @ weight.T + bias


def assert_same_metrics(got, expected, dtype):
    tol = TOL[np.dtype(dtype)]
    for name in FLOAT_METRICS:
        np.testing.assert_allclose(getattr(got, name), expected[name], rtol=tol, atol=tol,
                                   err_msg=name)
    assert got.count == expected["count"]
    np.testing.assert_allclose(got.weight_sum, expected["weight_sum"], rtol=1e-15)
    assert got.topk.keys() == expected["topk"].keys()
    for k, value in got.topk.items():
        np.testing.assert_allclose(value, expected["topk"][k], rtol=tol, err_msg=f"top-{k}")


OPTIONS = {
    "plain": {},
    "weight": {"weight": np.linspace(0.5, 2.0, N_CLASSES)},
    "sample_weight": {"sample_weight": np.linspace(0.1, 2.0, N_ROWS)},
    "ignore_index": {"ignore_index": 2},
}


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("chunk_rows", (1, 8, None))
def test_equals_evaluate_on_logits(dtype, name, chunk_rows):
    hidden, weight, bias, labels = make_case(dtype)
    options = OPTIONS[name]
    got = fastxent.evaluate_linear(hidden, weight, labels, linear_bias=bias, topk=(1, 3),
                                   chunk_rows=chunk_rows, **options)
    z = logits_of(hidden, weight, bias)
    assert_same_metrics(got, reference_evaluate(z, labels, topk=(1, 3), **options), dtype)
    whole = fastxent.evaluate(z, labels, topk=(1, 3), **options)
    assert_same_metrics(got, whole.to_dict() | {"topk": whole.topk}, dtype)


@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_soft_targets_and_no_bias(dtype):
    hidden, weight, _, _ = make_case(dtype)
    soft = np.random.default_rng(3).dirichlet(np.ones(N_CLASSES), N_ROWS).astype(dtype)
    got = fastxent.evaluate_linear(hidden, weight, soft, chunk_rows=9)
    expected = reference_evaluate(hidden @ weight.T, soft)
    assert got.accuracy is None
    for name in ("loss", "perplexity", "entropy", "brier"):
        np.testing.assert_allclose(getattr(got, name), expected[name], rtol=TOL[np.dtype(dtype)])


def test_streamed_and_merged_equal_whole():
    hidden, weight, bias, labels = make_case(np.float64)
    whole = fastxent.evaluate_linear(hidden, weight, labels, linear_bias=bias)
    streamed = fastxent.Evaluator()
    for start in range(0, N_ROWS, 20):
        streamed.update_linear(hidden[start:start + 20], weight, labels[start:start + 20],
                               linear_bias=bias, chunk_rows=6)
    first, second = fastxent.Evaluator(), fastxent.Evaluator()
    first.update_linear(hidden[:30], weight, labels[:30], linear_bias=bias)
    second.update_linear(hidden[30:], weight, labels[30:], linear_bias=bias)
    merged = first.merge(second)
    mixed = fastxent.Evaluator().update(logits_of(hidden[:30], weight, bias), labels[:30])
    mixed.update_linear(hidden[30:], weight, labels[30:], linear_bias=bias)
    for other in (streamed, merged, mixed):
        result = other.result()
        for name in FLOAT_METRICS:
            np.testing.assert_allclose(getattr(result, name), getattr(whole, name),
                                       rtol=1e-13, err_msg=name)
        assert result.count == whole.count


def test_update_linear_checks_before_changing_the_state():
    hidden, weight, bias, labels = make_case(np.float64)
    ev = fastxent.Evaluator().update_linear(hidden, weight, labels, linear_bias=bias)
    state = ev.to_dict()
    with pytest.raises(ValueError, match="is not a class index"):
        ev.update_linear(hidden, weight, labels + N_CLASSES, linear_bias=bias)
    with pytest.raises(ValueError, match="seen 13 classes"):
        ev.update_linear(hidden, weight[:-1], labels % 12)
    with pytest.raises(TypeError, match="linear_weight is float32"):
        ev.update_linear(hidden, weight.astype(np.float32), labels)
    assert ev.to_dict() == state


@pytest.mark.parametrize("options", ({"from_logits": False}, {"axis": 0}))
def test_update_linear_needs_logits_on_the_last_axis(options):
    hidden, weight, bias, labels = make_case(np.float64)
    with pytest.raises(ValueError, match="from_logits=True and the class axis last"):
        fastxent.Evaluator(**options).update_linear(hidden, weight, labels)


def test_update_linear_axis_is_checked_against_the_logits():
    """axis=1 is the last axis of (N, V) logits, and out of bounds for one row's (V,)."""
    hidden, weight, bias, labels = make_case(np.float64)
    rows = fastxent.Evaluator(axis=1).update_linear(hidden, weight, labels).result()
    assert rows.count == N_ROWS
    with pytest.raises(ValueError, match="axis 1 is out of bounds"):
        fastxent.Evaluator(axis=1).update_linear(hidden[0], weight, labels[0])


def test_language_model_perplexity_example():
    """The README's worked example: the perplexity of a uniform model is V."""
    hidden = np.zeros((100, 8), np.float32)
    weight = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    labels = np.arange(100) % 50
    result = fastxent.evaluate_linear(hidden, weight, labels)
    np.testing.assert_allclose(result.perplexity, 50.0, rtol=1e-6)
