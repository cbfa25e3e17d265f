"""fastxent.sklearn.log_loss against sklearn.metrics.log_loss: values, warnings, errors."""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
if tuple(int(part) for part in sklearn.__version__.split(".")[:2]) < (1, 9):
    pytest.skip("fastxent.sklearn.log_loss reproduces scikit-learn 1.9's messages",
                allow_module_level=True)
from sklearn.metrics import log_loss as sk_log_loss  # noqa: E402

from fastxent.sklearn import log_loss  # noqa: E402

RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-6, np.dtype(np.float16): 2e-3}


def _outcome(fn, args, kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:                   # noqa: BLE001 - compared below
            result = exc
    return result, [(w.category, str(w.message)) for w in caught]


def check(y_true, y_pred, rtol=None, **kwargs):
    """Same value (or same exception and message) and same warnings as scikit-learn."""
    ours, our_warnings = _outcome(log_loss, (y_true, y_pred), kwargs)
    theirs, their_warnings = _outcome(sk_log_loss, (y_true, y_pred), kwargs)
    assert our_warnings == their_warnings
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs), (ours, theirs)
        # scikit-learn 1.9 renamed y_pred to y_proba (fastxent keeps y_pred, taking both)
        assert str(ours) == str(theirs).replace("'y_proba'", "'y_pred'")
        return theirs
    assert isinstance(ours, float), ours
    if rtol is None:
        rtol = RTOL.get(np.asarray(y_pred).dtype, 1e-12)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)
    return theirs


def _probs(rng, n, c, dtype=np.float64):
    p = rng.random((n, c)) ** 3
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("kind, n_classes", [
    (kind, n) for kind in ("int", "str", "float", "negint", "bool", "object") for n in (2, 3, 7)
    if kind != "bool" or n == 2])
def test_multiclass_labels(kind, n_classes, dtype):
    rng = np.random.default_rng([n_classes, len(kind)])
    n = 40
    codes = rng.integers(0, n_classes, n)
    codes[:n_classes] = np.arange(n_classes)               # every class present
    y = {"int": codes, "str": np.array([f"c{k}" for k in codes]), "float": codes * 1.0,
         "negint": codes - 3, "bool": codes.astype(bool),
         "object": np.array([f"label {k}" for k in codes], dtype=object)}[kind]
    p = _probs(rng, n, n_classes, dtype)
    for normalize in (True, False):
        check(y, p, normalize=normalize)
        check(list(y), p.tolist() if dtype == np.float64 else p, normalize=normalize)
        check(y, p, normalize=normalize, sample_weight=rng.random(n))
        check(y, p, normalize=normalize, sample_weight=rng.integers(0, 4, n).tolist())
    if n_classes == 2:
        check(y, p[:, 1])                                   # 1-D: P(positive class)
        check(y, p[:, 1:], sample_weight=rng.random(n))     # (n, 1) column
        check(y, p[:, 1], normalize=False)


def test_labels_argument():
    rng = np.random.default_rng(1)
    y = np.array(["b", "a", "b", "b", "a"])
    p3 = _probs(rng, 5, 3)
    check(y, p3, labels=["a", "b", "c"])                    # a class absent from y_true
    check(y, p3, labels=["c", "a", "b"])                    # unordered labels: the warning
    check(y, p3, labels=np.array(["a", "b", "c"]), sample_weight=[1, 2, 3, 4, 5])
    check(y, p3, labels=["a", "b"])                         # labels vs y_pred columns
    check(y, p3, labels=["a", "c", "d"])                    # y_true value not in labels
    check(y, p3[:, :2], labels=["a", "b"])
    check(["a", "a", "a"], p3[:3, :2], labels=["a", "b"])   # one label in y_true: fine
    check(["a", "a", "a"], p3[:3, 1], labels=["a", "b"])
    check([1, 1, 1], p3[:3, 1], labels=[1])                 # one label in labels
    check([2, 2, 0], p3[:3], labels=[0, 1, 2, 3])
    check([2, 2, 0], _probs(rng, 3, 4), labels=[3, 0, 1, 2])
    for dtype in (np.uint8, np.uint64, np.int8, np.int32):            # integer label dtypes
        check(np.array([3, 4, 5, 4], dtype=dtype), p3[:4])
        check(np.array([3, 5, 5, 3], dtype=dtype), p3[:4], labels=[3, 4, 5])


def test_warnings_and_errors():
    rng = np.random.default_rng(2)
    p = _probs(rng, 6, 3)
    y = [0, 1, 2, 2, 1, 0]
    check(y, p * 1.01 / 1.011)                              # rows not summing to 1: warns
    check(y, np.hstack([p[:, :2], p[:, 2:] * 0.5]))
    check([1, 1, 1], p[:3, :2])                             # only one label, labels=None
    check(y, p[:, :2])                                      # 3 classes vs 2 columns
    check([0, 1, 0, 1], _probs(rng, 4, 3))                  # 2 classes vs 3 columns
    check(y, np.minimum(p * 3, 1.5))                        # > 1
    check(y, p - 0.5)                                       # < 0
    p_nan = p.copy()
    p_nan[0, 0] = np.nan
    check(y, p_nan)
    check(y[:5], p)                                         # inconsistent lengths
    check(y, p, sample_weight=np.ones(5))
    check(y, p, sample_weight=np.ones((6, 1)))
    check(y, p, sample_weight=np.zeros(6))                  # all zero
    check(y, p, sample_weight=[1, -1, 1, -1, 0, 0])         # sums to zero
    check(y, p, sample_weight=[1, -1, 1, -1, 0, 0], normalize=False)
    check(y, p, normalize="yes")
    check(y, "proba")
    check(5, p)
    check([0.5, 1.5, 0.5, 1.5, 0.5, 1.5], p)                # continuous labels
    check(["a", 1, "b", 1, "a", 1], p)                      # mixed label types
    check(np.array([[0, 1], [1, 0], [1, 1]]), _probs(rng, 3, 2))   # indicator matrix
    check(np.zeros((0,), dtype=int), np.zeros((0, 2)))
    check(y, p.reshape(6, 3, 1))


def test_clipping_and_extremes():
    for dtype in (np.float64, np.float32):
        p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-30, 1 - 1e-7, 1e-7],
                      [0.5, 0.5, 0.0]], dtype=dtype)
        y = [1, 1, 0, 2]                                    # true probabilities 0 and 1e-30
        check(y, p, rtol=RTOL[np.dtype(dtype)])
        check([0, 1, 1, 0], np.array([0.0, 1.0, 1 - 1e-17, 1e-300]).astype(dtype))


def test_indicator_matrix_and_column_vector_y_true():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (30, 4))
    check(y, _probs(rng, 30, 4))                            # multilabel indicator y_true
    check(rng.integers(0, 3, (30, 1)), _probs(rng, 30, 3))   # (n, 1) labels


def test_large_input_matches():
    rng = np.random.default_rng(4)
    n, c = 20000, 10                                        # above the serial threshold
    p = _probs(rng, n, c)
    y = rng.integers(0, c, n)
    check(y, p, sample_weight=rng.random(n))
    check(y, p.astype(np.float32), normalize=False)
    check(y % 2, p[:, 0])


def test_y_proba_alias():
    y, p = [0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]
    assert log_loss(y, y_proba=p) == log_loss(y, p)
    with pytest.raises(ValueError, match="both"):
        log_loss(y, p, y_proba=p)
