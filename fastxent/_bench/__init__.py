"""``fastxent bench``: time fastxent against its peers on built-in workloads.

Modules, in the order data flows through them:

- :mod:`~fastxent._bench.workloads`: the workload kinds, their sizes and their seeded data.
- :mod:`~fastxent._bench.builders`: the interface of an implementation module.
- ``impl_fastxent``, ``impl_numpy``, ``impl_torch``, ``impl_sklearn``, ``impl_jax``: one
  module per implementation.
- :mod:`~fastxent._bench.implementations`: the implementations by name.
- :mod:`~fastxent._bench.timing`: timed calls, the copy bandwidth, the machine description.
- :mod:`~fastxent._bench.runner`: a run over a list of workloads.
- :mod:`~fastxent._bench.report`: the text table, the JSON and the plot of a run.

The names below are what ``fastxent.cli`` and the pytest-benchmark suite in ``bench/`` use.
"""

from fastxent._bench.implementations import (
    EVALUATE_METRICS,
    IMPLEMENTATIONS,
    available_peers,
    prepare,
    required_module,
    supports,
)
from fastxent._bench.report import (
    format_evaluate_multiples,
    format_header,
    format_json,
    format_table,
    plot_ratios,
    text_table,
)
from fastxent._bench.runner import benchmark_workload, run_suite
from fastxent._bench.timing import machine_info
from fastxent._bench.workloads import (
    BINARY_CE,
    BINARY_LOGLOSS,
    DTYPES,
    EVALUATE,
    EVALUATE_METRIC_NAMES,
    SOFTMAX_CE,
    SOFTMAX_CE_LOSS,
    SOFTMAX_GRAD_HESS,
    SOFTMAX_TERMS,
    TOP_K,
    XGBOOST_ROUND,
    Workload,
    default_workloads,
    make_data,
)

__all__ = [
    "BINARY_CE",
    "BINARY_LOGLOSS",
    "DTYPES",
    "EVALUATE",
    "EVALUATE_METRICS",
    "EVALUATE_METRIC_NAMES",
    "IMPLEMENTATIONS",
    "SOFTMAX_CE",
    "SOFTMAX_CE_LOSS",
    "SOFTMAX_GRAD_HESS",
    "SOFTMAX_TERMS",
    "TOP_K",
    "XGBOOST_ROUND",
    "Workload",
    "available_peers",
    "benchmark_workload",
    "default_workloads",
    "format_evaluate_multiples",
    "format_header",
    "format_json",
    "format_table",
    "machine_info",
    "make_data",
    "plot_ratios",
    "prepare",
    "required_module",
    "run_suite",
    "supports",
    "text_table",
]
