"""Softmax building blocks on the same kernels: softmax, log_softmax, logsumexp."""

import math

import numpy as np

from fastxent._api import docstrings as docs
from fastxent._api import validation as v
from fastxent._core.dispatch import kernels
from fastxent._core.threads import threads_for

_DOC = """
    Parameters
    ----------
    x : array_like
        Logits, classes along `axis`. float32 is computed in float32, float64 in float64,
        other real dtypes in float64. A 0-d `x` is one class (as in PyTorch).
    axis : {axis_type}, default=-1
        The class axis{axis_more}. C-ordered input is walked in place for every axis.
    out : ndarray, optional
        Where to write the result: C-contiguous, writeable, of the result's shape and the
        computation dtype.{in_place}
    n_threads : int, optional
        OpenMP threads, as for ``cross_entropy``.

    Returns
    -------
    ndarray
        {returns} (`out` itself when given).
    """


def _transform(x, axis, out, n_threads, mode):
    x = v.float_input(x, "x")
    if mode == kernels.RowTransform.LOGSUMEXP:
        x, axis = _reduced_axes_last(x, axis)
    if x.ndim == 0:
        # A scalar is one class (PyTorch): a row of one element, shaped back to 0-d.
        _check_scalar_axis(axis)
        value = _transform(x.reshape(1), 0, None, n_threads, mode).reshape(())
        if out is None:
            return value
        out = v.output(out, x, ())
        out[()] = value
        return out
    n_classes, n_inner, rows_shape = v.class_layout(x, axis, allow_empty=True)
    threads = threads_for(x.size, n_threads)
    if mode == kernels.RowTransform.LOGSUMEXP:
        lse = v.output(out, x, (), rows_shape)
        if n_classes == 0:
            lse[...] = -np.inf                   # the log of an empty sum (PyTorch)
        else:
            kernels.transform_rows(x.reshape(-1), n_classes, n_inner, mode, None,
                                   lse.reshape(-1), threads)
        return lse
    result = v.output(out, x, ())
    if n_classes:
        kernels.transform_rows(x.reshape(-1), n_classes, n_inner, mode, result.reshape(-1),
                               None, threads)
    return result


def _check_scalar_axis(axis):
    """A 0-d input has the axis 0 (or -1) only, as in PyTorch."""
    axis = v.check_int(axis, "axis")
    if axis not in (0, -1):
        raise ValueError(f"axis {axis} is out of bounds for a 0-d input (only 0 or -1)")


def _reduced_axes_last(x, axis):
    """For ``logsumexp`` over a tuple of axes: `x` with those axes merged into one last axis
    (a view when they already are the trailing axes in order, else one copy), and -1."""
    if not isinstance(axis, tuple):
        return x, axis
    if not axis:
        raise ValueError("axis=() names no axis: logsumexp needs at least one axis to reduce")
    if x.ndim == 0:
        if len(axis) > 1:
            raise ValueError(f"axis {axis}: a 0-d input has one axis only")
        return x, axis[0]
    normalized = [v.check_axis(v.check_int(a, "axis", must="be an int or a tuple of ints"),
                               x.shape) for a in axis]
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"axis {axis} names an axis more than once")
    kept = [a for a in range(x.ndim) if a not in normalized]
    last = len(kept)
    if normalized != list(range(last, x.ndim)):
        x = np.ascontiguousarray(np.moveaxis(x, normalized, list(range(last, x.ndim))))
    return x.reshape(x.shape[:last] + (math.prod(x.shape[last:]),)), -1


_IN_PLACE = " ``out=x`` computes in place."
_ONE_AXIS = dict(axis_type="int", axis_more=" (of length 0: an empty result)")


@docs.doc("Softmax along `axis`: ``exp(x - logsumexp(x))``, computed stably.\n"
          + _DOC.format(in_place=_IN_PLACE, returns="Shaped like `x`", **_ONE_AXIS))
def softmax(x, *, axis=-1, out=None, n_threads=None):
    return _transform(x, axis, out, n_threads, kernels.RowTransform.SOFTMAX)


@docs.doc("Log-softmax along `axis`: ``x - logsumexp(x)``, exact at the arg-max.\n"
          + _DOC.format(in_place=_IN_PLACE, returns="Shaped like `x`", **_ONE_AXIS))
def log_softmax(x, *, axis=-1, out=None, n_threads=None):
    return _transform(x, axis, out, n_threads, kernels.RowTransform.LOG_SOFTMAX)


@docs.doc("``log(sum(exp(x)))`` along `axis`, without overflow. A row whose largest "
          "value is +-inf gives +-inf.\n"
          + _DOC.format(in_place="", returns="Shaped like `x` without `axis`",
                        axis_type="int or tuple of ints",
                        axis_more=" or axes, reduced together (non-trailing axes are moved "
                                  "last in one copy); an empty sum gives -inf"))
def logsumexp(x, *, axis=-1, out=None, n_threads=None):
    return _transform(x, axis, out, n_threads, kernels.RowTransform.LOGSUMEXP)

