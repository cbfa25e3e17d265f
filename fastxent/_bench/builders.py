"""The interface every implementation module (``impl_*.py``) follows.

An implementation module defines:

``MODULE`` : str
    The module it needs (``"torch"``, ``"sklearn"``...). The implementation is available when
    that module imports; its ``__version__`` is reported with the results.
``BUILDERS`` : dict of str to Builder
    One *builder* per workload kind it supports. A kind without a builder is not applicable
    to that implementation: it is left out of the kind's results.
``EVALUATE_METRICS`` : MetricsBuilder or None
    The builder of the ``"evaluate"`` kind that returns every metric (the timed builder in
    ``BUILDERS`` returns only the loss), or None when the kind is not applicable.

A builder takes the :class:`~fastxent._bench.workloads.Data` and a thread count, does every
untimed preparation (allocating outputs, converting arrays, compiling) and returns a
zero-argument callable that performs one timed call and returns the loss as a Python float.
"""

from collections.abc import Callable

from fastxent._bench.workloads import EVALUATE_METRIC_NAMES, Data

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
