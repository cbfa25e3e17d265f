"""Argument checks shared by the loss families.

Every check runs before a kernel writes anything, so a call that raises leaves ``out`` and any
in-place buffer untouched.
"""

import math
import numbers
import operator

import numpy as np

from fastxent._core.dispatch import kernels

REDUCTIONS = ("none", "sum", "mean")
INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def as_array(x, name):
    """``np.asarray(x)``, with a clear error for arrays NumPy cannot view (such as a torch
    tensor that requires grad or lives on a GPU)."""
    try:
        return np.asarray(x)
    except (TypeError, RuntimeError, ValueError) as exc:
        module = type(x).__module__.split(".")[0]
        hint = ""
        if module == "torch":
            hint = (": for torch tensors use fastxent.torch (autograd and devices), or pass "
                    "tensor.detach().cpu()")
        raise TypeError(f"{name} of type {type(x).__module__}.{type(x).__name__} cannot be "
                        f"read as a NumPy array ({exc}){hint}") from None


def computation_dtype(dtype):
    """The dtype a kernel computes `dtype`'s values in: float32 for float32 of either byte
    order, float64 for everything else (float64 of either byte order, integers, float16,
    longdouble). The one rule for arrays and files alike."""
    if dtype.kind == "f" and dtype.itemsize == 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def float_input(x, name="input"):
    """Return `x` as a C-contiguous, native-order float32 or float64 array.

    float32 stays float32 and float64 stays float64 (a non-native byte order is swapped in a
    copy); other real dtypes (integers, float16, longdouble) are converted to float64.
    Non-contiguous input is copied once.
    """
    arr = as_array(x, name)
    kind = arr.dtype.kind
    if kind not in "iuf":
        raise TypeError(f"{name} must have a real (integer or floating) dtype, got {arr.dtype}")
    return np.asarray(arr, dtype=computation_dtype(arr.dtype), order="C")


def float_like(x, dtype, name):
    """Return real-valued `x` as a C-contiguous array of `dtype` (bool counts as 0/1)."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real dtype, got {arr.dtype}")
    return np.asarray(arr, dtype=dtype, order="C")


def plain(value):
    """`value` as the Python scalar it holds when it is a NumPy scalar or a 0-d array, else
    `value` itself: the first step of every option check, so that options compare, print and
    save as plain Python values."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def check_flag(value, name):
    """Return the flag `value` as a bool: a bool, ``np.bool_`` or 0-d bool array, never a
    truthy stand-in (``"False"`` is true).

    Raises
    ------
    TypeError
        ``"{name} must be a bool, got {value!r}"``.
    """
    value = plain(value)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_int(value, name, *, low=None, high=None, must="be an int", type_error=TypeError):
    """Return `value` as a Python int in [`low`, `high`] (a bound of None is no bound).

    Anything with ``__index__`` is an int (NumPy integers included), a bool is not.

    Parameters
    ----------
    value : object
        The option's value.
    name : str
        The option's name, for the message.
    low, high : int, optional
        The bounds, both included.
    must : str
        What `value` must be or hold, completing ``"{name} must {must}, got {value!r}"``: the
        one message for every way `value` can be wrong.
    type_error : type, default=TypeError
        The exception for a value that is not an int (ValueError where an option has always
        raised that); a value out of bounds raises ValueError.

    Returns
    -------
    int
    """
    value = plain(value)
    message = f"{name} must {must}, got {value!r}"
    if isinstance(value, bool):
        raise type_error(message)
    try:
        value = operator.index(value)
    except TypeError:
        raise type_error(message) from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(message)
    return value


def check_real(value, name, low, high, *, high_open=False, must=None, type_error=ValueError):
    """Return the real number `value` as a float in [`low`, `high`] (NaN never is).

    Parameters
    ----------
    value : object
        The option's value: a real number (a bool is not one).
    name : str
        The option's name, for the message.
    low, high : float
        The bounds; `low` is included, `high` unless `high_open`.
    high_open : bool, default=False
        Exclude `high`.
    must : str, optional
        What `value` must be, completing ``"{name} must {must}, got {value!r}"``: the one
        message for every way `value` can be wrong. By default ``be a number in [low, high]``.
    type_error : type, default=ValueError
        The exception for a value that is not a real number; a value out of bounds (or too
        large for a float) raises ValueError.

    Returns
    -------
    float
    """
    value = plain(value)
    if must is None:
        must = f"be a number in [{low}, {high}{')' if high_open else ']'}"
    message = f"{name} must {must}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(message)
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(message) from None
    if not low <= number <= high or (high_open and number == high):
        raise ValueError(message)
    return number


def check_reduction(reduction, name="reduction"):
    """Return `reduction`, one of ``REDUCTIONS``, as a str."""
    reduction = plain(reduction)
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{name} must be one of 'none', 'sum', 'mean', got {reduction!r}")
    return str(reduction)


def check_axis(axis, shape):
    """Return `axis` of an array of `shape` as an index in ``[0, len(shape))``."""
    axis = check_int(axis, "axis")
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of bounds for input of shape {shape}")
    return axis % len(shape)


def class_layout(x, axis, allow_empty=False):
    """Return (n_classes, n_inner, rows_shape) of `x` with classes along `axis`.

    A C-ordered array is then walked as (outer, n_classes, n_inner): the rows are the
    (outer, inner) positions, `n_inner` elements separate two classes of a row. A class axis
    of length 0 is an error unless `allow_empty`.
    """
    if x.ndim == 0:
        raise ValueError("input must have a class axis, got a 0-d array")
    axis = check_axis(axis, x.shape)
    n_classes = x.shape[axis]
    if n_classes == 0 and not allow_empty:
        raise ValueError(f"input of shape {x.shape} has no classes along axis {axis}")
    return n_classes, math.prod(x.shape[axis + 1:]), x.shape[:axis] + x.shape[axis + 1:]


def output(out, x, others, shape=None, name="out"):
    """Validate the caller's output buffer, or allocate one when `out` is None.

    Parameters
    ----------
    out : ndarray or None
        The caller's buffer: C-contiguous, writeable, of `shape` and `x`'s dtype. Passing the
        input itself (when `shape` is its shape) computes in place.
    x : ndarray
        The C-contiguous float array the kernel reads.
    others : sequence of ndarray or None
        The other arrays the kernel reads; `out` must not overlap them.
    shape : tuple, optional
        The output's shape; `x`'s shape by default.
    name : str, default="out"
        The keyword the caller passed `out` as, for the error messages.

    Returns
    -------
    ndarray
        The buffer the kernel writes.
    """
    shape = x.shape if shape is None else shape
    if out is None:
        return np.empty(shape, dtype=x.dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if isinstance(out, np.matrix):
        raise TypeError(f"{name} must be a numpy.ndarray, not a numpy.matrix (whose reshape "
                        "keeps two dimensions)")
    if out.shape != shape or out.dtype != x.dtype:
        raise ValueError(f"{name} must have shape {shape} and dtype {x.dtype}, got shape "
                         f"{out.shape} and dtype {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if np.may_share_memory(out, x) and not same_buffer(out, x):
        raise ValueError(f"{name} overlaps the input without being the input itself (in place "
                         "needs the same memory, shape, strides and dtype)"
                         if out.shape == x.shape else
                         f"{name} overlaps the input (the result cannot be computed in place)")
    for other in others:
        if other is not None and np.may_share_memory(out, other):
            others_named = "the target or the weights" if name == "out" else (
                "the target, the weights or out")
            raise ValueError(f"{name} must not overlap {others_named}")
    return out


def same_buffer(a, b):
    """True when `a` and `b` view exactly the same elements in the same order: the same start
    address, shape, strides and dtype (a shared start address alone is not enough)."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def check_unit_interval(arr, name, n_threads, skip=None):
    """Raise ValueError naming the first element of `arr` outside [0, 1] (NaN included).

    Elements equal to `skip` are allowed (ignored targets).
    """
    flat = arr.reshape(-1)
    _, first = kernels.outside(flat, 0.0, 1.0, skip is not None,
                               0.0 if skip is None else skip, n_threads)
    if first >= 0:
        index = np.unravel_index(first, arr.shape)
        raise ValueError(f"{name} must lie in [0, 1] (validate=True): {name}"
                         f"[{', '.join(map(str, index))}] = {flat[first]!r}")
