"""XGBoost objectives and metrics computed by fastxent.

``xgboost.train(params, dtrain, obj=softmax_objective(3), custom_metric=softmax_metric())``
trains with fastxent's softmax cross-entropy in place of ``multi:softprob``. Without options
the gradient and Hessian are XGBoost's own: ``p - onehot(y)`` and ``max(2 p (1 - p) w,
1e-6)`` (XGBoost's factor 2 and floor), so the trees are those of the built-in objective. The
options (class weights, label smoothing, ``ignore_index``, focal terms, z-loss,
soft-capping) are what the built-in objective does not offer; focal terms and soft-capping
can make the Hessian negative, and the floor applies to it too. ``logistic_objective`` does
the same for ``binary:logistic`` (Hessian ``max(p (1 - p), 1e-16) w``).

XGBoost is not imported here: the functions take whatever ``xgboost.train`` passes (the
scores and a ``DMatrix``).
"""

import numpy as np

import fastxent
from fastxent import _boosting

#: XGBoost's floors on the Hessian (multi:softprob after the weight, binary:logistic before).
SOFTMAX_HESS_FLOOR = 1e-6
LOGISTIC_HESS_FLOOR = 1e-16


def softmax_objective(num_class, **options):
    """A multiclass objective for ``xgboost.train(obj=...)``.

    Parameters
    ----------
    num_class : int
        The number of classes (XGBoost's ``num_class`` parameter, which must be set too).
    **options
        ``weight`` (per-class weights), ``label_smoothing``, ``ignore_index``, ``z_loss``,
        ``softcap``, ``focal_gamma``, ``focal_alpha``, ``n_threads`` of
        :func:`fastxent.cross_entropy_grad_hess` (focal terms and soft-capping can make the
        Hessian negative: the floor applies to it too). Labels and sample weights come from the
        ``DMatrix``.

    Returns
    -------
    callable
        ``objective(predt, dtrain) -> (grad, hess)``, both shaped like ``predt``
        (rows, num_class).
    """
    name = "fastxent.xgboost.softmax_objective"
    num_class = _boosting.check_num_class(num_class, name)
    options = _boosting.softmax_options(options, num_class, name)

    def objective(predt, dtrain):
        grad, hess = _boosting.softmax_grad_hess(predt, dtrain, num_class, options, name)
        hess *= 2
        np.maximum(hess, SOFTMAX_HESS_FLOOR, out=hess)
        return grad, hess
    return objective


def logistic_objective(**options):
    """A binary objective for ``xgboost.train(obj=...)``, as ``binary:logistic``.

    Parameters
    ----------
    **options
        ``pos_weight``, ``label_smoothing``, ``ignore_index``, ``softcap``, ``focal_gamma``,
        ``focal_alpha``, ``n_threads`` of :func:`fastxent.binary_cross_entropy_grad_hess`.
        Labels in [0, 1] and sample weights come from the ``DMatrix``.

    Returns
    -------
    callable
        ``objective(predt, dtrain) -> (grad, hess)``, both of shape (rows,).
    """
    name = "fastxent.xgboost.logistic_objective"
    options = _boosting.logistic_options(options, name)

    def objective(predt, dtrain):
        grad, hess = _boosting.logistic_grad_hess(predt, dtrain, options, name)
        weights = _boosting.sample_weights(dtrain.get_weight())
        floor = LOGISTIC_HESS_FLOOR if weights is None else LOGISTIC_HESS_FLOOR * weights
        np.maximum(hess, floor, out=hess, casting="unsafe")
        return grad, hess
    return objective


def softmax_metric(name="mlogloss"):
    """A ``custom_metric`` for ``xgboost.train``: the weighted mean softmax cross-entropy of
    the raw scores, through :func:`fastxent.evaluate` (XGBoost's ``mlogloss``).

    Returns
    -------
    callable
        ``metric(predt, dtrain) -> (name, value)``.
    """
    def metric(predt, dtrain):
        return name, _boosting.mean_softmax_loss(predt, dtrain)
    return metric


def logistic_metric(name="logloss"):
    """A ``custom_metric``: the weighted mean binary cross-entropy of the raw scores
    (XGBoost's ``logloss``, weighted by the ``DMatrix``'s sample weights).

    Returns
    -------
    callable
        ``metric(predt, dtrain) -> (name, value)``.
    """
    def metric(predt, dtrain):
        predt = np.asarray(predt)
        labels = np.asarray(dtrain.get_label()).astype(predt.dtype)
        weights = _boosting.sample_weights(dtrain.get_weight())
        total = fastxent.binary_cross_entropy(predt, labels, weight=weights, reduction="sum")
        return name, float(total) / (float(np.sum(weights)) if weights is not None
                                     else labels.size)
    return metric
