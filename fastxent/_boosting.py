"""What fastxent's gradient-boosting objectives (``fastxent.xgboost``, ``fastxent.lightgbm``)
share: the options they take, the labels and weights they read, the gradient-Hessian call.

A booster hands its objective the raw scores (logits) and the training set's labels and
sample weights; the objective returns the gradient and Hessian diagonal of the summed loss.
"""

import numpy as np

import fastxent

#: Options of the multiclass objective: everything of ``cross_entropy_grad_hess`` that does
#: not come from the booster (scores, labels and sample weights do; the reduction is "sum").
SOFTMAX_OPTIONS = ("weight", "ignore_index", "label_smoothing", "z_loss", "softcap",
                   "focal_gamma", "focal_alpha", "n_threads")
#: Options of the binary objective (``weight`` there is the booster's sample weight).
LOGISTIC_OPTIONS = ("pos_weight", "ignore_index", "label_smoothing", "softcap", "focal_gamma",
                    "focal_alpha", "n_threads")


def _check_names(options, allowed, name):
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{name} got unexpected option(s) {', '.join(unknown)}; it takes "
                        f"{', '.join(allowed)} (scores, labels and sample weights come from "
                        "the booster's data set)")


def softmax_options(options, num_class, name):
    """Check the multiclass objective's options when it is made (not in the first round):
    the names, then the values on a one-row input."""
    _check_names(options, SOFTMAX_OPTIONS, name)
    fastxent.cross_entropy_grad_hess(np.zeros((1, num_class)), np.zeros(1, np.int64), **options)
    return dict(options)


def logistic_options(options, name):
    """As ``softmax_options``, for the binary objective."""
    _check_names(options, LOGISTIC_OPTIONS, name)
    fastxent.binary_cross_entropy_grad_hess(np.zeros(1), np.zeros(1), **options)
    return dict(options)


def check_num_class(num_class, name):
    """`num_class` as an int of at least 2, or a TypeError/ValueError naming `name`."""
    if isinstance(num_class, bool) or not isinstance(num_class, (int, np.integer)):
        raise TypeError(f"{name}: num_class must be an int, got {type(num_class).__name__}")
    if num_class < 2:
        raise ValueError(f"{name}: num_class must be at least 2, got {num_class}")
    return int(num_class)


def scores(predt, n_rows, num_class, name):
    """The booster's raw scores as an (n_rows, num_class) array, or (n_rows,) for 1 class."""
    predt = np.asarray(predt)
    want = (n_rows, num_class) if num_class > 1 else (n_rows,)
    if predt.shape != want:
        raise ValueError(f"{name}: the booster passed scores of shape {predt.shape}, expected "
                         f"{want} (is num_class right?)")
    return predt


def class_labels(labels, num_class, options, name):
    """The booster's float labels as int64 class indices: whole numbers in [0, num_class), or
    the ``ignore_index`` of `options`."""
    labels = np.asarray(labels)
    with np.errstate(invalid="ignore"):
        as_int = labels.astype(np.int64)
    ignored = labels == options.get("ignore_index", np.nan)
    bad = ((as_int != labels) | (labels < 0) | (labels >= num_class)) & ~ignored
    if np.any(bad):
        raise ValueError(f"{name}: labels must be class indices 0 .. {num_class - 1}"
                         f"{' or ignore_index' if 'ignore_index' in options else ''}, got "
                         f"{float(labels[bad][0])!r} at row {int(np.argmax(bad))}")
    return as_int


def sample_weights(weights):
    """The booster's sample weights, or None when it has none (an empty or None weight)."""
    if weights is None:
        return None
    weights = np.asarray(weights)
    return weights if weights.size else None


def softmax_grad_hess(predt, data, num_class, options, name):
    """Gradient and Hessian diagonal of the summed softmax cross-entropy of the booster's
    scores `predt`, with the labels and sample weights of its data set `data`."""
    labels = class_labels(data.get_label(), num_class, options, name)
    predt = scores(predt, labels.shape[0], num_class, name)
    return fastxent.cross_entropy_grad_hess(predt, labels,
                                            sample_weight=sample_weights(data.get_weight()),
                                            reduction="sum", **options)


def logistic_grad_hess(predt, data, options, name):
    """Gradient and second derivative of the summed binary cross-entropy of the scores."""
    labels = np.asarray(data.get_label())
    predt = scores(predt, labels.shape[0], 1, name)
    return fastxent.binary_cross_entropy_grad_hess(predt, labels.astype(predt.dtype),
                                                   weight=sample_weights(data.get_weight()),
                                                   reduction="sum", **options)


def mean_softmax_loss(predt, data):
    """The sample-weighted mean softmax cross-entropy of the scores, through
    :func:`fastxent.evaluate`."""
    labels = np.asarray(data.get_label()).astype(np.int64)
    result = fastxent.evaluate(np.asarray(predt), labels, topk=(1,),
                               sample_weight=sample_weights(data.get_weight()))
    return float(result.loss)
