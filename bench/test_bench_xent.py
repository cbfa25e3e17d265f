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
LOSS_RTOL = {"float32": 1e-4, "float64": 1e-9}


# The implementation varies fastest, so each workload's data is generated once.
@pytest.mark.parametrize("implementation", _bench.IMPLEMENTATIONS)
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda workload: workload.label)
def test_cross_entropy(benchmark, workload, implementation, workload_data, fastxent_loss,
                       threads):
    pytest.importorskip(_bench.IMPLEMENTATIONS[implementation].module)
    run = _bench.prepare(implementation, workload, workload_data(workload), threads)
    benchmark.group = workload.label
    loss = benchmark(run)
    assert loss == pytest.approx(fastxent_loss(workload), rel=LOSS_RTOL[workload.dtype])
