"""Softmax building blocks on the same kernels: softmax, log_softmax, logsumexp."""

from fastxent import _validation as v
from fastxent._dispatch import kernels
from fastxent._threads import threads_for

_DOC = """
    Parameters
    ----------
    x : array_like
        Logits, classes along `axis`. float32 is computed in float32, float64 in float64,
        other real dtypes in float64.
    axis : int, default=-1
        The class axis. C-ordered input is walked in place for every axis.
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
    n_classes, n_inner, rows_shape = v.class_layout(x, axis)
    threads = threads_for(x.size, n_threads)
    if mode == kernels.RowTransform.LOGSUMEXP:
        lse = v.output(out, x, (), rows_shape)
        kernels.transform_rows(x.reshape(-1), n_classes, n_inner, mode, None, lse.reshape(-1),
                               threads)
        return lse
    result = v.output(out, x, ())
    kernels.transform_rows(x.reshape(-1), n_classes, n_inner, mode, result.reshape(-1), None,
                           threads)
    return result


def softmax(x, *, axis=-1, out=None, n_threads=None):
    return _transform(x, axis, out, n_threads, kernels.RowTransform.SOFTMAX)


def log_softmax(x, *, axis=-1, out=None, n_threads=None):
    return _transform(x, axis, out, n_threads, kernels.RowTransform.LOG_SOFTMAX)


def logsumexp(x, *, axis=-1, out=None, n_threads=None):
    return _transform(x, axis, out, n_threads, kernels.RowTransform.LOGSUMEXP)


_IN_PLACE = " ``out=x`` computes in place."
softmax.__doc__ = ("Softmax along `axis`: ``exp(x - logsumexp(x))``, computed stably.\n"
                   + _DOC.format(in_place=_IN_PLACE, returns="Shaped like `x`"))
log_softmax.__doc__ = ("Log-softmax along `axis`: ``x - logsumexp(x)``, exact at the arg-max.\n"
                       + _DOC.format(in_place=_IN_PLACE, returns="Shaped like `x`"))
logsumexp.__doc__ = ("``log(sum(exp(x)))`` along `axis`, without overflow. A row whose largest "
                     "value is +-inf gives +-inf.\n"
                     + _DOC.format(in_place="", returns="Shaped like `x` without `axis`"))
