"""pytest-benchmark suite: fastxent and each installed peer, one group per workload.

Run ``pytest bench`` for the full sizes; ``FASTXENT_BENCH_SMOKE=1`` selects the tiny
``--quick`` sizes (CI runs them with ``--benchmark-disable``).
"""

import os

import pytest

from fastxent import _bench

SMOKE = os.environ.get("FASTXENT_BENCH_SMOKE", "0") not in ("", "0")
# The full sizes match `fastxent bench`; the smoke run also checks float64 agreement.
WORKLOADS = _bench.default_workloads(dtypes=_bench.DTYPES if SMOKE else ("float32",), quick=SMOKE)
EVALUATE_WORKLOADS = [workload for workload in WORKLOADS if workload.kind == _bench.EVALUATE]
LOSS_RTOL = {"float32": 1e-4, "float64": 1e-9}
# Metrics that count rows: a tie between two scores, or a confidence on a bin edge, may put a
# row or two on the other side in another implementation.
ROW_COUNTING_METRICS = frozenset({"accuracy", f"top{_bench.TOP_K}", "ece"})
ROWS_ALLOWED_TO_DIFFER = 2


# The implementation varies fastest, so each workload's data is generated once.
@pytest.mark.parametrize("implementation", _bench.IMPLEMENTATIONS)
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda workload: workload.label)
def test_cross_entropy(benchmark, workload, implementation, workload_data, fastxent_loss,
                       threads):
    if not _bench.supports(implementation, workload.kind):
        pytest.skip(f"{workload.kind} is not applicable to {implementation}")
    pytest.importorskip(_bench.required_module(implementation))
    run = _bench.prepare(implementation, workload, workload_data(workload), threads)
    benchmark.group = workload.label
    loss = benchmark(run)
    assert loss == pytest.approx(fastxent_loss(workload), rel=LOSS_RTOL[workload.dtype])


@pytest.mark.parametrize(
    "implementation", [name for name in _bench.EVALUATE_METRICS if name != "fastxent"])
@pytest.mark.parametrize("workload", EVALUATE_WORKLOADS, ids=lambda workload: workload.label)
def test_evaluate_metrics_agree(workload, implementation, workload_data, threads):
    """Every peer of the "evaluate" workload computes all of fastxent.evaluate's metrics."""
    pytest.importorskip(_bench.required_module(implementation))
    data = workload_data(workload)
    expected = _bench.EVALUATE_METRICS["fastxent"](data, threads)()
    metrics = _bench.EVALUATE_METRICS[implementation](data, threads)()
    assert list(metrics) == list(_bench.EVALUATE_METRIC_NAMES)
    row_tolerance = ROWS_ALLOWED_TO_DIFFER / len(data.targets)
    for name, value in metrics.items():
        tolerance = row_tolerance if name in ROW_COUNTING_METRICS else 0.0
        assert value == pytest.approx(
            expected[name], rel=LOSS_RTOL[workload.dtype], abs=tolerance), name


def test_peer_without_builder_is_not_applicable():
    """A peer with no builder for a kind is left out of that workload's results."""
    assert not _bench.supports("jax", _bench.EVALUATE)
    workload = _bench.Workload(_bench.EVALUATE, "float32", (64, 10))
    result = _bench.benchmark_workload(
        workload, threads=1, repeat=1, peers=["jax", "numpy"], copy_bytes_per_s=1e9)
    assert list(result["peers"]) == ["numpy"]
    assert result["bytes"] == 64 * 10 * 4 + 64 * 8
