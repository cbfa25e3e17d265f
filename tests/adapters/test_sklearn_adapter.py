"""fastxent.sklearn.log_loss against the installed sklearn.metrics.log_loss.

Signature, values, warnings and errors are compared with the installed scikit-learn's, whatever
its version (the oldest supported, 1.5, is tested in its own venv); scikit-learn's own log_loss
tests run on both functions; non-NumPy inputs (torch tensors, array-API arrays) are covered.
"""

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from scipy.stats import bernoulli  # noqa: E402
from sklearn.metrics import log_loss as sk_log_loss  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

import fastxent.sklearn as fx_sklearn  # noqa: E402
from fastxent.sklearn import log_loss  # noqa: E402

SKLEARN = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
requires_torch = pytest.mark.skipif(torch is None, reason="needs torch")
requires_sklearn = {version: pytest.mark.skipif(
    SKLEARN < version, reason=f"scikit-learn < {version[0]}.{version[1]} behaves otherwise")
    for version in ((1, 7), (1, 9))}
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-6, np.dtype(np.float16): 2e-3}
# sklearn 1.9 renamed the argument; FutureWarning for the deprecated name
PROBA = "y_proba" if SKLEARN >= (1, 9) else "y_pred"
Y_PRED_DEPRECATION = ("`y_pred` was renamed to `y_proba` in version 1.9 and will be removed in "
                      "1.11. Use `y_proba` instead.")

# The calls fastxent hands to scikit-learn's own log_loss (inputs it warns about or rejects).
HANDED_TO_SKLEARN = []


@pytest.fixture(autouse=True)
def _count_handed_to_sklearn(monkeypatch):
    def counted(*args, **kwargs):
        HANDED_TO_SKLEARN.append((args, kwargs))
        return sk_log_loss(*args, **kwargs)
    HANDED_TO_SKLEARN.clear()
    monkeypatch.setattr(fx_sklearn, "_sklearn_log_loss", counted)


@pytest.fixture(params=["sklearn", "fastxent"])
def any_log_loss(request):
    """scikit-learn's own log_loss and fastxent's: the ported tests hold for both."""
    return {"sklearn": sk_log_loss, "fastxent": log_loss}[request.param]


def _outcome(fn, args, kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:                   # noqa: BLE001 - compared below
            result = exc
    return result, [(w.category, str(w.message)) for w in caught]


def check_call(args, kwargs, rtol=None, kernel=None):
    """Same value (or same exception and message) and same warnings as scikit-learn.

    Where scikit-learn warns (other than the y_pred deprecation) or raises, fastxent must have
    handed the call to it; where it returns a value silently, fastxent's kernel must have
    computed it (`kernel`; by default asserted from scikit-learn 1.9 on, whose checks are the
    strictest: 1.8 still takes all-zero weights, 1.5 probabilities above 1)."""
    handed_before = len(HANDED_TO_SKLEARN)
    ours, our_warnings = _outcome(log_loss, args, kwargs)
    handed = len(HANDED_TO_SKLEARN) > handed_before
    theirs, their_warnings = _outcome(sk_log_loss, args, kwargs)
    assert our_warnings == their_warnings
    flagged = isinstance(theirs, Exception) or any(
        warning != (FutureWarning, Y_PRED_DEPRECATION) for warning in their_warnings)
    if kernel is None and SKLEARN >= (1, 9):
        kernel = not flagged
    if flagged:
        assert handed and not kernel
    elif kernel is not None:
        assert handed != kernel
    if isinstance(theirs, Exception):
        assert type(ours) is type(theirs), (ours, theirs)
        assert str(ours) == str(theirs)
        return theirs
    assert isinstance(ours, float), ours
    if rtol is None:
        proba = args[1] if len(args) > 1 else kwargs.get("y_proba", kwargs.get("y_pred"))
        rtol = RTOL.get(np.asarray(proba).dtype, 1e-12)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)
    return theirs


def check(y_true, proba, rtol=None, kernel=None, **kwargs):
    """check_call with the probabilities passed positionally."""
    return check_call((y_true, proba), kwargs, rtol=rtol, kernel=kernel)


def _probs(rng, n, c, dtype=np.float64):
    p = rng.random((n, c)) ** 3
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


# ---------------------------------------------------------------------------------------------
# Signature: the installed scikit-learn's (item 20)

def test_signature_is_the_installed_scikit_learns():
    ours = inspect.signature(log_loss).parameters.values()
    theirs = inspect.signature(sk_log_loss).parameters.values()
    assert [(p.name, p.kind, p.default) for p in ours] == [
        (p.name, p.kind, p.default) for p in theirs]


@requires_sklearn[(1, 9)]
def test_y_pred_keyword_deprecated_as_in_scikit_learn():
    rng = np.random.default_rng(5)
    y, p = [0, 1, 2, 2, 1, 0], _probs(rng, 6, 3)
    check_call((y,), {"y_proba": p})
    check_call((y,), {"y_pred": p})                          # FutureWarning, kernel value
    check_call((y,), {"y_pred": p.tolist(), "sample_weight": rng.random(6)})
    check_call((y, p), {"y_pred": p})                        # both: scikit-learn's ValueError
    check_call((y,), {"y_pred": p, "y_proba": p})
    check_call((y, p), {"y_pred": "deprecated"})             # the default, spelled out
    check_call((y,), {"y_pred": p * 0.9})                    # FutureWarning, then sum warning
    check_call((y,), {"y_pred": p[:, :2]})                   # FutureWarning, then the error
    check_call((y,), {"y_pred": p, "normalize": "yes"})      # parameter error, no warning
    check_call((y,), {"y_pred": "proba"})
    check_call((y,), {})                                     # no probabilities at all
    with pytest.warns(FutureWarning) as caught:              # points at the caller
        log_loss(y, y_pred=p)
    assert caught[0].filename == __file__


@pytest.mark.skipif(SKLEARN >= (1, 9), reason="scikit-learn >= 1.9 takes y_proba")
def test_old_signature_takes_y_pred_only():
    y, p = [0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]
    check_call((y,), {"y_pred": p}, kernel=True)
    with pytest.raises(TypeError, match=re.escape(
            "log_loss() got an unexpected keyword argument 'y_proba'")):
        log_loss(y, y_proba=p)
    with pytest.raises(TypeError):                          # its message differs by version
        sk_log_loss(y, y_proba=p)


# ---------------------------------------------------------------------------------------------
# Only public scikit-learn APIs (item 21)

def test_uses_no_private_scikit_learn_api():
    tree = ast.parse(Path(fx_sklearn.__file__).read_text(encoding="utf-8"))
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] == "sklearn":
            imported += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names if alias.name.startswith("sklearn")]
    assert imported
    private = [name for name in imported if any(part.startswith("_") for part in name.split("."))]
    assert private == []


# ---------------------------------------------------------------------------------------------
# Values, warnings and errors against the installed scikit-learn

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
        check(y, p, normalize=normalize, kernel=True)
        check(list(y), p.tolist() if dtype == np.float64 else p, normalize=normalize,
              kernel=True)
        check(y, p, normalize=normalize, sample_weight=rng.random(n), kernel=True)
        check(y, p, normalize=normalize, sample_weight=rng.integers(0, 4, n).tolist(),
              kernel=True)
    if n_classes == 2:
        check(y, p[:, 1], kernel=True)                      # 1-D: P(positive class)
        check(y, p[:, 1:], sample_weight=rng.random(n), kernel=True)   # (n, 1) column
        check(y, p[:, 1], normalize=False, kernel=True)
        check(y, p[:, 1], sample_weight=rng.random(n) < 0.5, kernel=True)   # bool weights


def test_labels_argument():
    rng = np.random.default_rng(1)
    y = np.array(["b", "a", "b", "b", "a"])
    p2, p3 = _probs(rng, 5, 2), _probs(rng, 5, 3)
    check(y, p3, labels=["a", "b", "c"], kernel=True)       # a class absent from y_true
    check(y, p3, labels=["c", "a", "b"])                    # unordered labels: the warning
    check(y, p3, labels=np.array(["a", "b", "c"]), sample_weight=[1, 2, 3, 4, 5], kernel=True)
    check(y, p3, labels=["a", "b"])                         # labels vs y_pred columns
    check(y, p3, labels=["a", "c", "d"])                    # y_true value not in labels
    check(y, p3, labels=["a", "b", "b", "c"])               # repeated label
    check(y, p3[:, :2], labels=["a", "b"])                  # rows not summing to one
    check(y, p2, labels=["a", "b"], kernel=True)
    check(["a", "a", "a"], p2[:3], labels=["a", "b"], kernel=True)   # one label in y_true
    check(["a", "a", "a"], p3[:3, 1], labels=["a", "b"], kernel=True)
    check([1, 1, 1], p3[:3, 1], labels=[1])                 # one label in labels
    check([2, 2, 0], p3[:3], labels=[0, 1, 2, 3])
    check([2, 2, 0], _probs(rng, 3, 4), labels=[3, 0, 1, 2])
    check([2, 2, 0], _probs(rng, 3, 4), labels=[0, 1, 2, 3], kernel=True)
    for dtype in (np.uint8, np.uint64, np.int8, np.int32):            # integer label dtypes
        check(np.array([3, 4, 5, 4], dtype=dtype), p3[:4], kernel=True)
        check(np.array([3, 5, 5, 3], dtype=dtype), p3[:4], labels=[3, 4, 5], kernel=True)


def test_warnings_and_errors():
    rng = np.random.default_rng(2)
    p = _probs(rng, 6, 3)
    y = [0, 1, 2, 2, 1, 0]
    check(y, p * 1.01 / 1.011)                              # rows not summing to 1: warns
    check(y, np.hstack([p[:, :2], p[:, 2:] * 0.5]))
    check([1, 1, 1], p[:3, :2])                             # only one label, labels=None
    check(y, p[:, :2])                                      # 3 classes vs 2 columns
    check([0, 1, 0, 1], _probs(rng, 4, 3))                  # 2 classes vs 3 columns
    check(y, np.minimum(p * 3, 1.5))                        # > 1 (clipped before 1.7)
    check(y, p - 0.5)                                       # < 0
    check([0, 1, 1], [0.2, 1.5, 0.7])
    p_nan = p.copy()
    p_nan[0, 0] = np.nan
    check(y, p_nan)
    check(y[:5], p)                                         # inconsistent lengths
    check(y, p, sample_weight=np.ones(5))
    check(y, p, sample_weight=np.ones((6, 1)))
    check(y, p, sample_weight=np.zeros(6))                  # all zero
    check(y, p, sample_weight=np.zeros(6), normalize=False)
    check(y, p, sample_weight=[1, -1, 1, -1, 0, 0])         # sums to zero
    check(y, p, sample_weight=[1, -1, 1, -1, 0, 0], normalize=False, kernel=True)
    check(y, p, sample_weight=[1, np.nan, 1, 1, 1, 1])
    check(y, p, sample_weight=[1, np.inf, 1, 1, 1, 1])
    check(y, p, sample_weight=["1", "2", "1", "1", "1", "1"])
    check(y, p, sample_weight=3.0)
    check(y, p, normalize="yes")
    check(y, p, normalize=1)
    check(y, p, normalize=np.True_, kernel=True)
    check(y, "proba")
    check(y, 0.5)
    check(5, p)
    check("abc", p)
    check(y, p, labels=5)
    check([0.5, 1.5, 0.5, 1.5, 0.5, 1.5], p)                # continuous labels
    check(["a", 1, "b", 1, "a", 1], p)                      # mixed label types
    check(np.array([[0, 1], [1, 0], [1, 1]]), _probs(rng, 3, 2))   # indicator matrix
    check(np.zeros((0,), dtype=int), np.zeros((0, 2)))
    check(y, p.reshape(6, 3, 1))
    check(y, p.astype(np.complex128))
    check(y, p.astype(object), kernel=True)


def test_sparse_inputs_are_scikit_learns_to_reject():
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(6)
    y = np.array([[0, 1], [1, 0], [1, 1]])
    p = _probs(rng, 3, 2)
    check(sparse.csr_matrix(y), p)
    check(y, sparse.csr_matrix(p))


def test_clipping_and_extremes():
    for dtype in (np.float64, np.float32):
        p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-30, 1 - 1e-7, 1e-7],
                      [0.5, 0.5, 0.0]], dtype=dtype)
        y = [1, 1, 0, 2]                                    # true probabilities 0 and 1e-30
        check(y, p, rtol=RTOL[np.dtype(dtype)], kernel=True)
        check([0, 1, 1, 0], np.array([0.0, 1.0, 1 - 1e-17, 1e-300]).astype(dtype),
              kernel=True)


def test_indicator_matrix_and_column_vector_y_true():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (30, 4))
    check(y, _probs(rng, 30, 4), kernel=True)               # multilabel indicator y_true
    check(rng.integers(0, 3, (30, 1)), _probs(rng, 30, 3), kernel=True)   # (n, 1) labels


def test_large_input_matches():
    rng = np.random.default_rng(4)
    n, c = 20000, 10                                        # above the serial threshold
    p = _probs(rng, n, c)
    y = rng.integers(0, c, n)
    check(y, p, sample_weight=rng.random(n), kernel=True)
    check(y, p.astype(np.float32), normalize=False, kernel=True)
    check(y % 2, p[:, 0], kernel=True)


# ---------------------------------------------------------------------------------------------
# Non-NumPy inputs (item 20)

@requires_torch
def test_torch_tensors_converted_as_scikit_learn_converts_them():
    rng = np.random.default_rng(7)
    y, p, w = rng.integers(0, 3, 12), _probs(rng, 12, 3), rng.random(12)
    y[:3] = np.arange(3)
    for dtype in (torch.float64, torch.float32):
        check(torch.from_numpy(y), torch.from_numpy(p).to(dtype), kernel=True)
        check(y, torch.from_numpy(p).to(dtype), sample_weight=torch.from_numpy(w),
              kernel=True)
    check(torch.from_numpy(y % 2), torch.from_numpy(p[:, 0]), kernel=True)
    check(y, torch.from_numpy(p[:, :2]))                    # scikit-learn's class-count error


@requires_torch
def test_torch_labels_converted():
    """scikit-learn >= 1.7 fails on a tensor ``labels`` with a TypeError from inside torch
    (``torch.all``); fastxent converts it as it converts every other tensor."""
    rng = np.random.default_rng(8)
    y, p = [2, 0, 2, 1], _probs(rng, 4, 4)
    expected = sk_log_loss(y, p, labels=np.arange(4))
    assert log_loss(y, p, labels=torch.arange(4)) == pytest.approx(expected, rel=1e-12)


class _ArrayAPIOnly:
    """An array of another library that NumPy cannot convert (like a GPU array, or an array-API
    array without ``__array__``)."""

    def __init__(self, array):
        self._array, self.shape, self.ndim = array, array.shape, array.ndim

    def __len__(self):
        return len(self._array)

    def __array_namespace__(self, api_version=None):
        return np

    def __array__(self, dtype=None, copy=None):
        raise TypeError("implicit conversion to a NumPy array is not allowed")


@requires_torch
def test_unconvertible_arrays_refused_clearly():
    y, p = [0, 1, 1], np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    grad = torch.tensor(p, requires_grad=True)
    message = (f"fastxent.sklearn.log_loss: {PROBA} is a torch.Tensor that NumPy cannot "
               "convert (Can't call numpy() on Tensor that requires grad. Use "
               "tensor.detach().numpy() instead.); only NumPy arrays and array-likes NumPy "
               "converts are supported (for a torch tensor pass t.detach().cpu().numpy()).")
    with pytest.raises(TypeError, match=re.escape(message)):
        log_loss(y, grad)
    with pytest.raises(TypeError, match="sample_weight is a torch.Tensor that NumPy cannot"):
        log_loss(y, p, sample_weight=torch.ones(3, requires_grad=True))
    with pytest.raises(TypeError, match=re.escape(
            f"fastxent.sklearn.log_loss: y_true is a {__name__}._ArrayAPIOnly that NumPy "
            "cannot convert (implicit conversion to a NumPy array is not allowed)")):
        log_loss(_ArrayAPIOnly(np.array(y)), p)
    assert HANDED_TO_SKLEARN == []


@requires_torch
def test_array_api_dispatch_refused_clearly():
    """With scikit-learn's array_api_dispatch on (needs SCIPY_ARRAY_API=1 before scipy is
    imported: a fresh interpreter), NumPy inputs give scikit-learn's value and torch inputs a
    clear error."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np, sklearn, torch
        from sklearn.metrics import log_loss as sk_log_loss
        from fastxent.sklearn import log_loss
        y, p = np.array([0, 1, 1, 0]), np.array([[.8, .2], [.3, .7], [.4, .6], [.6, .4]])
        try:
            sklearn.set_config(array_api_dispatch=True)
        except (ImportError, RuntimeError) as exc:   # scikit-learn without array-API support
            print(json.dumps({"skip": str(exc)}))
            sys.exit()
        out = {"numpy": [log_loss(y, p), sk_log_loss(y, p)]}
        for name, args in {"proba": (y, torch.tensor(p)), "y_true": (torch.tensor(y), p)}.items():
            try:
                out[name] = log_loss(*args)
            except TypeError as exc:
                out[name] = str(exc)
        print(json.dumps(out))
    """)
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    ours, theirs = out["numpy"]
    assert ours == pytest.approx(theirs, rel=1e-12)
    for name in (PROBA, "y_true"):
        assert out["proba" if name == PROBA else name] == (
            f"fastxent.sklearn.log_loss: {name} is a torch.Tensor; scikit-learn's array API "
            "dispatch is on and fastxent supports NumPy inputs only. Pass NumPy arrays, or use "
            "sklearn.metrics.log_loss for array API inputs.")


# ---------------------------------------------------------------------------------------------
# scikit-learn's own log_loss tests (sklearn/metrics/tests/test_classification.py, 1.9.1, with
# 1.5's messages where they differ), run on both functions

ONE_LABEL = ("y_true contains only one label (2). Please provide the list of all expected "
             "class labels explicitly through the labels argument." if SKLEARN >= (1, 7) else
             "y_true contains only one label (2). Please provide the true labels explicitly "
             "through the labels argument.")
NOT_SUMMING = f"The y_{'prob' if SKLEARN >= (1, 7) else 'pred'} values do not sum to one."


def test_log_loss(any_log_loss):
    # binary case with symbolic labels ("no" < "yes")
    y_true = ["no", "no", "no", "yes", "yes", "yes"]
    y_proba = np.array(
        [[0.5, 0.5], [0.1, 0.9], [0.01, 0.99], [0.9, 0.1], [0.75, 0.25], [0.001, 0.999]])
    loss = any_log_loss(y_true, y_proba)
    loss_true = -np.mean(bernoulli.logpmf(np.array(y_true) == "yes", y_proba[:, 1]))
    np.testing.assert_allclose(loss, loss_true)

    # multiclass case
    y_true = [1, 0, 2]
    y_proba = [[0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.6, 0.1, 0.3]]
    loss = any_log_loss(y_true, y_proba, normalize=True)
    np.testing.assert_allclose(loss, 0.6904911)

    # check that we got all the shapes and axes right by doubling the length of both
    y_true *= 2
    y_proba *= 2
    loss = any_log_loss(y_true, y_proba, normalize=False)
    np.testing.assert_allclose(loss, 0.6904911 * 6)

    # raise error if number of classes are not equal.
    y_true = [1, 0, 2]
    y_proba = [[0.3, 0.7], [0.6, 0.4], [0.4, 0.6]]
    with pytest.raises(ValueError):
        any_log_loss(y_true, y_proba)

    # case when y_true is a string array object
    y_true = ["ham", "spam", "spam", "ham"]
    y_proba = [[0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.7, 0.3]]
    loss = any_log_loss(y_true, y_proba)
    np.testing.assert_allclose(loss, 0.7469410)

    # test labels option
    y_true = [2, 2]
    y_proba = [[0.2, 0.8], [0.6, 0.4]]
    y_score = np.array([[0.1, 0.9], [0.1, 0.9]])
    with pytest.raises(ValueError, match=re.escape(ONE_LABEL)):
        any_log_loss(y_true, y_proba)

    y_proba = [[0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]
    error_str = "Found input variables with inconsistent numbers of samples: [3, 2]"
    with pytest.raises(ValueError, match=re.escape(error_str)):
        any_log_loss(y_true, y_proba)

    # works when the labels argument is used
    true_log_loss = -np.mean(np.log(y_score[:, 1]))
    calculated_log_loss = any_log_loss(y_true, y_score, labels=[1, 2])
    np.testing.assert_allclose(calculated_log_loss, true_log_loss)

    # ensure labels work when len(np.unique(y_true)) != y_proba.shape[1]
    y_true = [1, 2, 2]
    y_score2 = [[0.7, 0.1, 0.2], [0.2, 0.7, 0.1], [0.1, 0.7, 0.2]]
    loss = any_log_loss(y_true, y_score2, labels=[1, 2, 3])
    np.testing.assert_allclose(loss, -np.log(0.7))


@requires_sklearn[(1, 7)]
def test_log_loss_labels_missing_a_y_true_value(any_log_loss):
    # raise error if labels do not contain all values of y_true
    y_true = ["a", "b", "c"]
    y_proba = [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.1, 0.1, 0.8]]
    labels = ["a", "c", "d"]
    error_str = ("y_true contains values {'b'} not belonging to the passed "
                 "labels ['a', 'c', 'd'].")
    with pytest.raises(ValueError, match=re.escape(error_str)):
        any_log_loss(y_true, y_proba, labels=labels)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_log_loss_eps(any_log_loss, dtype):
    """The internal eps depends on the input dtype (scikit-learn issue 24315)."""
    y_true = np.array([0, 1], dtype=dtype)
    y_proba = np.array([1, 0], dtype=dtype)
    loss = any_log_loss(y_true, y_proba)
    assert np.isfinite(loss)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_log_loss_not_probabilities_warning(any_log_loss, dtype):
    """log_loss warns when y_proba values don't sum to 1."""
    y_true = np.array([0, 1, 1, 0])
    y_proba = np.array([[0.2, 0.7], [0.6, 0.3], [0.4, 0.7], [0.8, 0.3]], dtype=dtype)
    with pytest.warns(UserWarning, match=re.escape(NOT_SUMMING)):
        any_log_loss(y_true, y_proba)


@pytest.mark.parametrize("y_true, y_proba", [
    ([0, 1, 0], [0, 1, 0]),
    ([0, 1, 0], [[1, 0], [0, 1], [1, 0]]),
    ([0, 1, 2], [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
])
def test_log_loss_perfect_predictions(any_log_loss, y_true, y_proba):
    """log_loss returns 0 for perfect predictions (not exactly: the clipping)."""
    assert any_log_loss(y_true, y_proba) == pytest.approx(0)


class _MockDataFrame:
    """Array-like through ``__array__`` only (sklearn.utils._mocking.MockDataFrame's part that
    log_loss sees)."""

    def __init__(self, array):
        self.array, self.shape, self.ndim = array, array.shape, array.ndim

    def __len__(self):
        return len(self.array)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.array, dtype=dtype)


def test_log_loss_pandas_input(any_log_loss):
    # case when input is a pandas series and dataframe (scikit-learn gh-5715)
    y_tr = np.array(["ham", "spam", "spam", "ham"])
    y_pr = np.array([[0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.7, 0.3]])
    types = [(_MockDataFrame, _MockDataFrame)]
    try:
        from pandas import DataFrame, Series
        types.append((Series, DataFrame))
    except ImportError:
        pass
    for true_input_type, pred_input_type in types:
        loss = any_log_loss(true_input_type(y_tr), pred_input_type(y_pr))
        np.testing.assert_allclose(loss, 0.7469410)


@requires_sklearn[(1, 7)]
def test_log_loss_warnings(any_log_loss):
    expected_message = re.escape(
        "Labels passed were ['spam', 'eggs', 'ham']. But this function "
        "assumes labels are ordered lexicographically. "
        "Pass the ordered labels=['eggs', 'ham', 'spam'] and ensure that "
        "the columns of y_prob correspond to this ordering.")
    with pytest.warns(UserWarning, match=expected_message):
        any_log_loss(["eggs", "spam", "ham"], [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                     labels=["spam", "eggs", "ham"])


@requires_sklearn[(1, 9)]
def test_log_loss_y_pred_deprecation(any_log_loss):
    """`y_pred` deprecation in favor of `y_proba`."""
    y_true = np.array([0, 1, 1, 0])
    y_proba = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        any_log_loss(y_true, y_proba)                       # no warning

    msg = "`y_pred` was renamed to `y_proba` in version 1.9 and will be removed "
    with pytest.warns(FutureWarning, match=re.escape(msg)):
        any_log_loss(y_true, y_pred=y_proba)

    msg = "Cannot use both `y_pred` and `y_proba`. `y_pred` is deprecated, "
    with pytest.raises(ValueError, match=re.escape(msg)):
        any_log_loss(y_true, y_pred=y_proba, y_proba=y_proba)


# scikit-learn's common metric invariances (sklearn/metrics/tests/test_common.py)

def test_log_loss_invariances(any_log_loss):
    rng = np.random.default_rng(9)
    n = 50
    y = rng.integers(0, 3, n)
    y[:3] = np.arange(3)
    p = _probs(rng, n, 3)
    loss = any_log_loss(y, p)
    order = rng.permutation(n)                              # sample order
    assert any_log_loss(y[order], p[order]) == pytest.approx(loss, rel=1e-12)
    assert any_log_loss(y, p, normalize=False) == pytest.approx(n * loss, rel=1e-12)
    assert any_log_loss(y, p, sample_weight=np.ones(n)) == pytest.approx(loss, rel=1e-12)
    weights = rng.integers(1, 4, n)                         # integer weights = repetitions
    repeated = np.repeat(np.arange(n), weights)
    assert any_log_loss(y, p, sample_weight=weights) == pytest.approx(
        any_log_loss(y[repeated], p[repeated]), rel=1e-12)
    assert any_log_loss(y, p, sample_weight=weights * 3.5) == pytest.approx(
        any_log_loss(y, p, sample_weight=weights), rel=1e-12)   # scaling the weights
    zero = np.ones(n)                                       # zero weight = sample removed
    zero[5:9] = 0
    kept = zero > 0
    assert any_log_loss(y, p, sample_weight=zero) == pytest.approx(
        any_log_loss(y[kept], p[kept]), rel=1e-12)
