"""scikit-learn drop-in: ``log_loss`` with the installed ``sklearn.metrics.log_loss``'s behaviour.

``import fastxent.sklearn`` needs scikit-learn (``fastxent`` itself never imports it)::

    from fastxent.sklearn import log_loss
    log_loss(["spam", "ham", "ham", "spam"], [[.1, .9], [.9, .1], [.8, .2], [.35, .65]])

The signature is the installed scikit-learn's: ``(y_true, y_proba=None, *, ..., y_pred=...)``
with the deprecated ``y_pred=`` keyword from scikit-learn 1.9 on, ``(y_true, y_pred, *, ...)``
before. The loss -- the clipped log of each row's true-class probability and the (weighted)
sum -- runs in fastxent's kernel, on the validated probabilities as they are: no clipped copy
and no one-hot matrix of the labels.

Only inputs that every supported scikit-learn version accepts without a warning take that path.
Anything scikit-learn warns about or rejects (probabilities outside [0, 1] or rows not summing
to one, unordered or missing ``labels``, invalid weights, a class count that differs, ...) is
handed to the installed ``sklearn.metrics.log_loss`` itself, so the warning, the error or the
value are exactly its own, whichever version is installed. Only public scikit-learn APIs are
used.

NumPy inputs only: another library's array (a torch tensor, an array-API array) is converted
with ``np.asarray`` as scikit-learn converts it, and is refused with a ``TypeError`` saying so
when NumPy cannot convert it or when scikit-learn's ``array_api_dispatch`` is on.
"""

import inspect
import math
import warnings

import numpy as np
import scipy.sparse
import sklearn
from sklearn.metrics import log_loss as _sklearn_log_loss
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_array, check_consistent_length, column_or_1d
from sklearn.utils.multiclass import type_of_target

import fastxent

__all__ = ["log_loss"]

# The dtypes scikit-learn's log_loss validates the probabilities to (its check_array call).
_FLOAT_DTYPES = (np.float64, np.float32, np.float16)

# scikit-learn 1.9 renamed y_pred to y_proba and kept y_pred as a deprecated keyword.
_SKLEARN_TAKES_Y_PROBA = "y_proba" in inspect.signature(_sklearn_log_loss).parameters
_Y_PRED_DEPRECATION = ("`y_pred` was renamed to `y_proba` in version 1.9 and will be removed "
                       "in 1.11. Use `y_proba` instead.")

_DOC = r"""Log loss, aka logistic loss or cross-entropy loss: ``sklearn.metrics.log_loss``.

    The installed scikit-learn's signature, checks, warnings, errors and results; the loss of
    inputs it accepts without a warning is computed by fastxent's kernel.

    Parameters
    ----------
    y_true : array-like or label indicator matrix
        Ground truth (correct) labels for n_samples samples: any labels (strings, ints, ...),
        encoded as by :class:`~sklearn.preprocessing.LabelBinarizer`.
    {proba} : array-like of float, shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities, as returned by ``predict_proba``; columns ordered as the
        sorted labels. A 1-D array holds the probability of the positive (larger) class.
        Values are clipped to ``[eps, 1 - eps]`` with ``eps = np.finfo({proba}.dtype).eps``.
    normalize : bool, default=True
        Return the mean loss per sample (weighted by `sample_weight`); otherwise the sum.
    sample_weight : array-like of shape (n_samples,), optional
        Sample weights.
    labels : array-like, optional
        All the class labels; inferred from `y_true` when omitted.{y_pred}

    Returns
    -------
    float
        The log loss.

    Raises
    ------
    TypeError
        For another library's array (torch, array API) that NumPy cannot convert, or any
        such array while scikit-learn's ``array_api_dispatch`` is on.

    Examples
    --------
    >>> from fastxent.sklearn import log_loss
    >>> round(log_loss(["spam", "ham", "ham", "spam"],
    ...                [[.1, .9], [.9, .1], [.8, .2], [.35, .65]]), 5)
    0.21616
    """

if _SKLEARN_TAKES_Y_PROBA:
    def log_loss(y_true, y_proba=None, *, normalize=True, sample_weight=None, labels=None,
                 y_pred="deprecated"):
        if isinstance(y_pred, str) and y_pred == "deprecated":
            return _log_loss(y_true, y_proba, "y_proba", normalize, sample_weight, labels)
        if y_proba is not None:                  # both given: scikit-learn's error
            return _sklearn_log_loss(y_true, y_proba, normalize=normalize,
                                     sample_weight=sample_weight, labels=labels, y_pred=y_pred)
        return _log_loss(y_true, y_pred, "y_pred", normalize, sample_weight, labels)

    log_loss.__doc__ = _DOC.format(proba="y_proba", y_pred="""
    y_pred : array-like of float, optional
        Deprecated name of `y_proba` (scikit-learn's ``FutureWarning``); give one of them.""")
else:
    def log_loss(y_true, y_pred, *, normalize=True, sample_weight=None, labels=None):
        return _log_loss(y_true, y_pred, "y_pred", normalize, sample_weight, labels)

    log_loss.__doc__ = _DOC.format(proba="y_pred", y_pred="")


def _log_loss(y_true, proba, proba_name, normalize, sample_weight, labels):
    """The loss in fastxent's kernel, or scikit-learn's own call where it warns or raises.

    `proba_name` is the argument that gave the probabilities: ``"y_pred"`` with scikit-learn
    >= 1.9 is its deprecated keyword."""
    deprecated_name = _SKLEARN_TAKES_Y_PROBA and proba_name == "y_pred"
    y_true = _as_numpy("y_true", y_true)
    proba = _as_numpy(proba_name, proba)
    sample_weight = _as_numpy("sample_weight", sample_weight)
    labels = _as_numpy("labels", labels)
    loss = _kernel_log_loss(y_true, proba, normalize, sample_weight, labels)
    if loss is None:
        if deprecated_name:
            return _sklearn_log_loss(y_true, y_pred=proba, normalize=normalize,
                                     sample_weight=sample_weight, labels=labels)
        return _sklearn_log_loss(y_true, proba, normalize=normalize,
                                 sample_weight=sample_weight, labels=labels)
    if deprecated_name:
        warnings.warn(_Y_PRED_DEPRECATION, FutureWarning, stacklevel=3)
    return loss


def _as_numpy(name, value):
    """`value`, or its NumPy conversion when it is another library's array (torch, CuPy, an
    array-API array), as scikit-learn's ``check_array`` converts it with dispatch off."""
    if isinstance(value, (np.ndarray, np.generic)) or not (
            hasattr(value, "__array_namespace__") or hasattr(value, "__dlpack__")):
        return value
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if sklearn.get_config()["array_api_dispatch"]:
        raise TypeError(
            f"fastxent.sklearn.log_loss: {name} is a {kind}; scikit-learn's array API "
            "dispatch is on and fastxent supports NumPy inputs only. Pass NumPy arrays, or use "
            "sklearn.metrics.log_loss for array API inputs.")
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"fastxent.sklearn.log_loss: {name} is a {kind} that NumPy cannot convert ({exc}); "
            "only NumPy arrays and array-likes NumPy converts are supported (for a torch "
            "tensor pass t.detach().cpu().numpy()).") from exc


def _is_array_like(value):
    """scikit-learn's "array-like" parameter constraint (sparse matrices excluded)."""
    return (not scipy.sparse.issparse(value) and not np.isscalar(value)
            and (hasattr(value, "__len__") or hasattr(value, "shape")
                 or hasattr(value, "__array__")))


def _kernel_log_loss(y_true, proba, normalize, sample_weight, labels):
    """The log loss computed by fastxent, or None when scikit-learn (any supported version)
    would warn about or reject the inputs, or versions would disagree on them."""
    if not (_is_array_like(y_true) and _is_array_like(proba)
            and isinstance(normalize, (bool, np.bool_))
            and (sample_weight is None or _is_array_like(sample_weight))
            and (labels is None or _is_array_like(labels))):
        return None
    try:
        proba = check_array(proba, ensure_2d=False, dtype=_FLOAT_DTYPES)
        check_consistent_length(proba, y_true, sample_weight)
    except (TypeError, ValueError):
        return None
    if np.max(proba) > 1 or np.min(proba) < 0:   # rejected from 1.7 on, clipped before
        return None
    if sample_weight is not None:
        sample_weight = _valid_weights(sample_weight, proba, normalize)
        if sample_weight is None:
            return None

    binarizer = _fit_binarizer(y_true, labels)
    if binarizer is None:
        return None
    classes = binarizer.classes_
    target = _encode_target(y_true, labels, binarizer)
    if target is None:
        return None

    binary = proba.ndim == 1 or proba.shape[1] == 1
    if classes.shape[0] != (2 if binary else proba.shape[1]):
        return None
    eps = np.finfo(proba.dtype).eps
    if not binary:            # [1 - p, p] sums to 1 within an ulp: nothing to check
        row_sums = np.sum(proba, axis=1)
        if not np.all(np.isclose(row_sums, np.asarray(1, dtype=row_sums.dtype),
                                 rtol=math.sqrt(eps))):
            return None
    return _loss(proba, target, binary, eps, normalize, sample_weight)


def _valid_weights(sample_weight, proba, normalize):
    """The weights as an array, or None where scikit-learn would reject them (numeric, 1-D
    and finite from 1.8 on, not all zero from 1.9 on) or could not normalize by their sum."""
    weights = np.asarray(sample_weight)
    if (weights.dtype.kind not in "biuf" or weights.shape != (proba.shape[0],)
            or not np.all(np.isfinite(weights)) or not np.any(weights)):
        return None
    if normalize and _weight_sum(weights, proba) == 0:     # scikit-learn: ZeroDivisionError
        return None
    return weights


def _weight_sum(weights, proba):
    """The weights' sum as ``np.average`` computes it in scikit-learn's log_loss."""
    return np.sum(weights, dtype=np.result_type(proba.dtype, weights.dtype))


def _fit_binarizer(y_true, labels):
    """scikit-learn's LabelBinarizer fitted as its log_loss fits it, or None where it warns
    (unordered `labels`) or raises (labels missing a `y_true` value, fewer than 2 classes)."""
    binarizer = LabelBinarizer()
    try:
        binarizer.fit(y_true if labels is None else labels)
        if labels is not None and not (np.all(binarizer.classes_ == labels)
                                       and np.all(np.isin(y_true, labels))):
            return None
    except (TypeError, ValueError):
        return None
    return binarizer if binarizer.classes_.shape[0] >= 2 else None


def _encode_target(y_true, labels, binarizer):
    """Each sample's class index (int64), or the one-hot/indicator rows (n, n_classes) where
    `y_true` is not plain labels; None where the binarizer rejects `y_true`."""
    try:
        y_type = binarizer.y_type_ if labels is None else type_of_target(y_true)
        target = _class_indices(y_true, binarizer.classes_, y_type)
        if target is None:
            target = binarizer.transform(y_true)
    except (TypeError, ValueError):
        return None
    if target.ndim == 2 and target.shape[1] == 1:
        target = np.concatenate((1 - target, target), axis=1)
    return target


def _class_indices(y_true, classes, y_type):
    """Each sample's column in the one-hot encoding (int64), or None when `y_true` is not
    plain binary/multiclass labels all found in `classes` (left to LabelBinarizer).

    Every label is known to be in `classes` (the labels of `y_true`, or `labels` after the
    membership check)."""
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


def _loss(proba, target, binary, eps, normalize, sample_weight):
    """scikit-learn's ``_log_loss`` (clip, log, weighted mean or sum) in fastxent's kernel."""
    if target.ndim == 2:                          # one-hot or indicator rows: soft targets
        if binary:
            proba = np.concatenate((1 - proba.reshape(-1, 1), proba.reshape(-1, 1)), axis=1)
        total = fastxent.cross_entropy(proba, target.astype(proba.dtype), from_logits=False,
                                       sample_weight=sample_weight, eps=eps, reduction="sum",
                                       validate=False)
    elif binary:
        total = fastxent.binary_cross_entropy(
            proba.reshape(-1), (target == 1).astype(proba.dtype), from_logits=False,
            weight=sample_weight, eps=eps, reduction="sum", validate=False)
    else:
        total = fastxent.cross_entropy(proba, target, from_logits=False,
                                       sample_weight=sample_weight, eps=eps, reduction="sum",
                                       validate=False)
    total = float(total)
    if not normalize:
        return total
    if sample_weight is None:
        return total / target.shape[0]
    return total / float(_weight_sum(sample_weight, proba))
