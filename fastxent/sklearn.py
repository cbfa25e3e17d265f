"""scikit-learn drop-in: ``log_loss`` with ``sklearn.metrics.log_loss``'s behaviour.

``import fastxent.sklearn`` needs scikit-learn (``fastxent`` itself never imports it)::

    from fastxent.sklearn import log_loss
    log_loss(["spam", "ham", "ham", "spam"], [[.1, .9], [.9, .1], [.8, .2], [.35, .65]])

The checks, warnings and error messages are scikit-learn's own (its validation helpers are
called in the same order); the loss -- the clipped log of each row's true-class probability
and the (weighted) sum -- runs in fastxent's kernel, on the validated probabilities as they
are: no clipped copy and no one-hot matrix of the labels.

NumPy inputs only (scikit-learn's array-API dispatch is not supported).
"""

import math
import warnings

import numpy as np
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._array_api import supported_float_dtypes
from sklearn.utils._param_validation import Hidden, validate_params
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (_check_sample_weight, check_array,
                                      check_consistent_length, column_or_1d)

import fastxent

__all__ = ["log_loss"]


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like", Hidden(None)],
        "normalize": ["boolean"],
        "sample_weight": ["array-like", None],
        "labels": ["array-like", None],
        "y_proba": ["array-like", Hidden(None)],
    },
    prefer_skip_nested_validation=True,
)
def log_loss(y_true, y_pred=None, *, normalize=True, sample_weight=None, labels=None,
             y_proba=None):
    r"""Log loss, aka logistic loss or cross-entropy loss: ``sklearn.metrics.log_loss``.

    Same arguments, checks, warnings, errors and results as scikit-learn 1.9's, computed
    by fastxent's kernel (with older scikit-learn, some messages follow 1.9).

    Parameters
    ----------
    y_true : array-like or label indicator matrix
        Ground truth (correct) labels for n_samples samples: any labels (strings, ints, ...),
        encoded as by :class:`~sklearn.preprocessing.LabelBinarizer`.
    y_pred : array-like of float, shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as returned by ``predict_proba``; columns ordered as the
        sorted labels. A 1-D array holds the probability of the positive (larger) class.
        Values are clipped to ``[eps, 1 - eps]`` with ``eps = np.finfo(y_pred.dtype).eps``.
    normalize : bool, default=True
        Return the mean loss per sample (weighted by `sample_weight`); otherwise the sum.
    sample_weight : array-like of shape (n_samples,), optional
        Sample weights.
    labels : array-like, optional
        All the class labels; inferred from `y_true` when omitted.
    y_proba : array-like, optional
        scikit-learn 1.9's name for `y_pred` (give one of them).

    Returns
    -------
    float
        The log loss.

    Examples
    --------
    >>> from fastxent.sklearn import log_loss
    >>> round(log_loss(["spam", "ham", "ham", "spam"],
    ...                [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 5)
    0.21616
    """
    if y_proba is not None:
        if y_pred is not None:
            raise ValueError("Cannot use both `y_pred` and `y_proba`: they are the same "
                             "argument.")
        y_pred = y_proba
    y_pred = check_array(y_pred, ensure_2d=False, dtype=supported_float_dtypes(np))

    # sklearn.metrics._classification._validate_multiclass_probabilistic_prediction
    if np.max(y_pred) > 1:
        raise ValueError(f"y_prob contains values greater than 1: {np.max(y_pred)}")
    if np.min(y_pred) < 0:
        raise ValueError(f"y_prob contains values lower than 0: {np.min(y_pred)}")
    check_consistent_length(y_pred, y_true, sample_weight)
    if sample_weight is not None:
        _check_sample_weight(sample_weight, y_pred, force_float_dtype=False)

    lb = _fit_binarizer(y_true, labels)
    classes = lb.classes_
    y_type = lb.y_type_ if labels is None else type_of_target(y_true)
    target = _class_indices(y_true, classes, y_type)
    if target is None:                            # a label indicator matrix, or unusual labels
        target = lb.transform(y_true)
        if target.shape[1] == 1:
            target = np.concatenate((1 - target, target), axis=1)
        n_target_classes = target.shape[1]
    else:
        n_target_classes = classes.shape[0]

    binary = y_pred.ndim == 1 or y_pred.shape[1] == 1
    n_pred_classes = 2 if binary else y_pred.shape[1]
    eps = np.finfo(y_pred.dtype).eps
    if not binary:            # [1 - p, p] sums to 1 within an ulp: nothing to check
        y_pred_sum = np.sum(y_pred, axis=1)
        if not np.all(np.isclose(y_pred_sum, np.asarray(1, dtype=y_pred_sum.dtype),
                                 rtol=math.sqrt(eps))):
            warnings.warn("The y_prob values do not sum to one. Make sure to pass "
                          "probabilities.", UserWarning)

    if classes.shape[0] != n_pred_classes:
        if labels is None:
            raise ValueError(
                "y_true and y_prob contain different number of "
                "classes: {0} vs {1}. Please provide the true "
                "labels explicitly through the labels argument. "
                "Classes found in "
                "y_true: {2}".format(n_target_classes, n_pred_classes, classes))
        raise ValueError(
            "The number of classes in labels is different "
            "from that in y_prob. Classes found in "
            "labels: {0}".format(classes))

    return _loss(y_pred, target, binary, eps, normalize, sample_weight)


def _fit_binarizer(y_true, labels):
    """scikit-learn's ``_one_hot_encoding_multiclass_target`` up to (not including) the
    one-hot transform: the same checks, warnings and errors."""
    lb = LabelBinarizer()
    if labels is not None:
        lb = lb.fit(labels)
        if not np.all(lb.classes_ == labels):
            warnings.warn(
                f"Labels passed were {labels}. But this function "
                "assumes labels are ordered lexicographically. "
                f"Pass the ordered labels={lb.classes_.tolist()} and ensure that "
                "the columns of y_prob correspond to this ordering.",
                UserWarning,
            )
        if not np.all(np.isin(y_true, labels)):
            undeclared_labels = set(y_true) - set(labels)
            raise ValueError(
                f"y_true contains values {undeclared_labels} not belonging "
                f"to the passed labels {labels}."
            )
    else:
        lb = lb.fit(y_true)

    if lb.classes_.shape[0] == 1:
        if labels is None:
            raise ValueError(
                "y_true contains only one label ({0}). Please "
                "provide the list of all expected class labels explicitly through the "
                "labels argument.".format(lb.classes_[0])
            )
        raise ValueError(
            "The labels array needs to contain at least two "
            "labels, got {0}.".format(lb.classes_)
        )
    return lb


def _class_indices(y_true, classes, y_type):
    """Each sample's column in the one-hot encoding (int64), or None when `y_true` is not
    plain binary/multiclass labels all found in `classes` (left to LabelBinarizer).

    Every label is known to be in `classes` (the labels of `y_true`, or `labels` after
    scikit-learn's membership check)."""
    if y_type not in ("binary", "multiclass"):
        return None
    y = column_or_1d(y_true)
    if y.dtype.kind in "iu" and classes.dtype.kind not in "iu":
        return None                               # label_binarize casts classes: its way
    if (y.dtype.kind in "iu" and classes.dtype.kind in "iu"
            and classes[-1] - classes[0] == classes.shape[0] - 1):
        return np.subtract(y, classes[0], dtype=np.int64)   # classes are a range
    try:
        index = np.searchsorted(classes, y)
        found = classes[np.minimum(index, classes.shape[0] - 1)] == y
    except (TypeError, ValueError):
        return None
    if not np.all(found):
        return None
    return index.astype(np.int64, copy=False)


def _loss(y_pred, target, binary, eps, normalize, sample_weight):
    """scikit-learn's ``_log_loss`` in fastxent's kernel."""
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight)
        if normalize:
            scale = np.sum(sample_weight.astype(np.float64))
            if scale == 0.0:
                raise ZeroDivisionError("Weights sum to zero, can't be normalized")
    if target.ndim == 2:                          # one-hot or indicator rows: soft targets
        if binary:
            y_pred = np.concatenate((1 - y_pred.reshape(-1, 1), y_pred.reshape(-1, 1)), axis=1)
        total = fastxent.cross_entropy(y_pred, target.astype(y_pred.dtype), from_logits=False,
                                       sample_weight=sample_weight, eps=eps, reduction="sum",
                                       validate=False)
    elif binary:
        total = fastxent.binary_cross_entropy(
            y_pred.reshape(-1), (target == 1).astype(y_pred.dtype), from_logits=False,
            weight=sample_weight, eps=eps, reduction="sum", validate=False)
    else:
        total = fastxent.cross_entropy(y_pred, target, from_logits=False,
                                       sample_weight=sample_weight, eps=eps, reduction="sum",
                                       validate=False)
    total = float(total)
    if not normalize:
        return total
    if sample_weight is None:
        return total / target.shape[0]
    return total / float(scale)
