"""The interface every implementation module (``impl_*.py``) follows.

An implementation module defines:

``MODULE`` : str
    The module it needs (``"torch"``, ``"sklearn"``...). The implementation is available when
    that module imports; its ``__version__`` is reported with the results.
one *builder* per workload kind it supports, named after the kind
    ``softmax_ce``, ``softmax_ce_loss``, ``binary_ce``, ``binary_logloss``; and
    ``evaluate_metrics``, the builder of the ``"evaluate"`` kind, which returns every metric
    (the timed call returns only the loss). A kind without a builder is not applicable to
    that implementation: it is left out of the kind's results.

A builder takes the :class:`~fastxent._bench.workloads.Data` and a thread count, does every
untimed preparation (allocating outputs, converting arrays, compiling) and returns a
zero-argument callable that performs one timed call and returns the loss as a Python float.
"""

from collections.abc import Callable

from fastxent._bench.workloads import (
    BINARY_CE,
    BINARY_LOGLOSS,
    EVALUATE,
    EVALUATE_METRIC_NAMES,
    SOFTMAX_CE,
    SOFTMAX_CE_LOSS,
    Data,
)

Run = Callable[[], float]
Builder = Callable[[Data, int], Run]
MetricsBuilder = Callable[[Data, int], Callable[[], dict[str, float]]]


def metrics(*values):
    """Name the metrics of one ``"evaluate"`` call.

    Parameters
    ----------
    *values : float or numeric scalar
        One value per name of ``EVALUATE_METRIC_NAMES``, in that order.

    Returns
    -------
    dict of str to float
    """
    return dict(zip(EVALUATE_METRIC_NAMES, map(float, values), strict=True))


def timed_loss(metrics_builder):
    """Turn a metrics builder into the builder that is timed.

    Parameters
    ----------
    metrics_builder : MetricsBuilder

    Returns
    -------
    Builder
        Its call computes every metric, as ``metrics_builder``'s does, and returns the loss.
    """
    def builder(data, threads):
        run = metrics_builder(data, threads)
        return lambda: run()["loss"]
    return builder


def builders_of(module):
    """The builders an implementation module defines, by workload kind.

    Parameters
    ----------
    module : module
        An ``impl_*`` module.

    Returns
    -------
    dict of str to Builder
        Its timed builder of every kind it supports.
    """
    found = {kind: getattr(module, kind)
             for kind in (SOFTMAX_CE, SOFTMAX_CE_LOSS, BINARY_CE, BINARY_LOGLOSS)
             if hasattr(module, kind)}
    if hasattr(module, "evaluate_metrics"):
        found[EVALUATE] = timed_loss(module.evaluate_metrics)
    return found
