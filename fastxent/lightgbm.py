"""LightGBM objectives and metrics computed by fastxent.

``lightgbm.train({"objective": softmax_objective(3), "num_class": 3, ...}, train_set,
feval=softmax_metric())`` trains with fastxent's softmax cross-entropy in place of
``multiclass``. Without options the gradient and Hessian are LightGBM's own: ``p -
onehot(y)`` and ``K / (K - 1) · p (1 - p) · w`` for K classes (LightGBM's factor), so the
trees are those of the built-in objective (with ``boost_from_average=False``, as a custom
objective starts from 0). The options (class weights, label smoothing, ``ignore_index``, focal
terms, z-loss, soft-capping) are what the built-in objective does not offer; focal terms and
soft-capping can make the Hessian negative, and a Hessian below ``HESS_FLOOR`` is raised to
it (LightGBM divides by the summed Hessian). ``logistic_objective`` does the same for
``binary`` (Hessian ``max(p (1 - p) w, HESS_FLOOR)``).

LightGBM is not imported here: the functions take whatever ``lightgbm.train`` passes (the
scores and a ``Dataset``); multiclass scores are (rows, num_class) arrays (LightGBM 4).
"""


import numpy as np

from fastxent import _boosting

#: The smallest Hessian handed to LightGBM (its built-in objectives' Hessians are >= 0).
HESS_FLOOR = 1e-16


def softmax_objective(num_class, **options):
    """A multiclass objective for LightGBM's ``objective`` parameter.

    Parameters
    ----------
    num_class : int
        The number of classes (LightGBM's ``num_class`` parameter, which must be set too).
    **options
        ``weight`` (per-class weights), ``label_smoothing``, ``ignore_index``, ``z_loss``,
        ``softcap``, ``focal_gamma``, ``focal_alpha``, ``n_threads`` of
        :func:`fastxent.cross_entropy_grad_hess`. Labels and sample weights come from the
        ``Dataset``.

    Returns
    -------
    callable
        ``objective(preds, train_data) -> (grad, hess)``, both shaped like ``preds``
        (rows, num_class).
    """
    name = "fastxent.lightgbm.softmax_objective"
    num_class = _boosting.check_num_class(num_class, name)
    options = _boosting.softmax_options(options, num_class, name)
    factor = num_class / (num_class - 1.0)

    def objective(preds, train_data):
        grad, hess = _boosting.softmax_grad_hess(preds, train_data, num_class, options, name)
        hess *= factor
        np.maximum(hess, HESS_FLOOR, out=hess)
        return grad, hess
    return objective


def logistic_objective(**options):
    """A binary objective for LightGBM's ``objective`` parameter, as ``binary``.

    Parameters
    ----------
    **options
        ``pos_weight``, ``label_smoothing``, ``ignore_index``, ``softcap``, ``focal_gamma``,
        ``focal_alpha``, ``n_threads`` of :func:`fastxent.binary_cross_entropy_grad_hess`.
        Labels in [0, 1] and sample weights come from the ``Dataset``.

    Returns
    -------
    callable
        ``objective(preds, train_data) -> (grad, hess)``, both of shape (rows,).
    """
    name = "fastxent.lightgbm.logistic_objective"
    options = _boosting.logistic_options(options, name)

    def objective(preds, train_data):
        grad, hess = _boosting.logistic_grad_hess(preds, train_data, options, name)
        np.maximum(hess, HESS_FLOOR, out=hess, casting="unsafe")
        return grad, hess
    return objective


def softmax_metric(name="multi_logloss"):
    """A ``feval`` for ``lightgbm.train``: the weighted mean softmax cross-entropy of the raw
    scores, through :func:`fastxent.evaluate` (LightGBM's ``multi_logloss``).

    Returns
    -------
    callable
        ``metric(preds, eval_data) -> (name, value, is_higher_better)``.
    """
    def metric(preds, eval_data):
        return name, _boosting.mean_softmax_loss(preds, eval_data), False
    return metric
