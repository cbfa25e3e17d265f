"""The interface every implementation module (``impl_*.py``) follows.

An implementation module defines:

``MODULE`` : str
    The module it needs (``"torch"``, ``"sklearn"``...). The implementation is available when
    that module imports; its ``__version__`` is reported with the results.
one *builder* per workload kind it supports, named after the kind
    ``softmax_ce``, ``softmax_ce_loss``, ``binary_ce``, ``binary_logloss``,
    ``softmax_grad_hess``, ``softmax_terms``, ``xgboost_round``, ``linear_ce``,
    ``linear_eval``, ``evaluate_slices``, ``compare``; and
    ``evaluate_metrics``, the builder of the ``"evaluate"`` kind, which returns every metric
    (the timed call returns only the loss). A kind without a builder is not applicable to
    that implementation: it is left out of the kind's results.

A builder takes the :class:`~fastxent._bench.workloads.Data` and a thread count, does every
untimed preparation (allocating outputs, converting arrays, compiling) and returns a
zero-argument callable that performs one timed call and returns the loss as a Python float
(``softmax_grad_hess``: the sum of the Hessian; ``xgboost_round``: the sum of the new model's
margins on the first rows), a number every implementation of the kind must agree on.
"""

from collections.abc import Callable

import numpy as np

from fastxent._bench.workloads import (
    BINARY_CE,
    BINARY_LOGLOSS,
    COMPARE,
    EVALUATE,
    EVALUATE_METRIC_NAMES,
    EVALUATE_SLICES,
    LINEAR_CE,
    LINEAR_EVAL,
    SOFTMAX_CE,
    SOFTMAX_CE_LOSS,
    SOFTMAX_GRAD_HESS,
    SOFTMAX_TERMS,
    XGBOOST_DEPTH,
    XGBOOST_ROUND,
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
             for kind in (SOFTMAX_CE, SOFTMAX_CE_LOSS, BINARY_CE, BINARY_LOGLOSS,
                          SOFTMAX_GRAD_HESS, SOFTMAX_TERMS, XGBOOST_ROUND, LINEAR_CE,
                          LINEAR_EVAL, EVALUATE_SLICES, COMPARE)
             if hasattr(module, kind)}
    if hasattr(module, "evaluate_metrics"):
        found[EVALUATE] = timed_loss(module.evaluate_metrics)
    return found


def n_classes(data):
    """The class count of a softmax or ``xgboost_round`` workload's labels."""
    return int(data.targets.max()) + 1


#: Rows whose margins the ``xgboost_round`` call returns (summed).
XGBOOST_CHECK_ROWS = 1000


def one_xgboost_round(data, threads, objective=None):
    """The timed call of ``xgboost_round``: one boosting round of a fresh multiclass model.

    Parameters
    ----------
    data : Data
        Features and class labels.
    threads : int
    objective : callable, optional
        A custom objective; None means XGBoost's built-in ``multi:softprob``.

    Returns
    -------
    Run
        Grows the round on a ``QuantileDMatrix`` built beforehand (so the feature sketch is
        not timed) and returns the sum of the model's margins on the first rows.
    """
    import xgboost as xgb
    dtrain = xgb.QuantileDMatrix(data.inputs, label=data.targets, nthread=threads)
    check = xgb.DMatrix(data.inputs[:XGBOOST_CHECK_ROWS], nthread=threads)
    params = {"num_class": n_classes(data), "max_depth": XGBOOST_DEPTH, "tree_method": "hist",
              "nthread": threads, "base_score": 0.0, "verbosity": 0}
    if objective is None:
        params["objective"] = "multi:softprob"
    else:
        params["disable_default_eval_metric"] = 1

    def run():
        booster = xgb.train(params, dtrain, 1, obj=objective)
        return float(booster.predict(check, output_margin=True).sum(dtype=np.float64))
    return run
