"""A linear layer fused with cross-entropy: the loss and gradients of a language-model head
from its hidden states, without the N x V logits.

The rows are taken in chunks. Each chunk's logits ``H[chunk] @ W.T + b`` are computed into one
buffer (a BLAS GEMM), turned into their gradient in place by the cross-entropy kernel, and
multiplied back: ``grad_W += G.T @ H[chunk]``,
``grad_H[chunk] = G @ W``, ``grad_b += G.sum(0)``. Memory beyond the inputs and gradients is
one chunk of logits. See docs/design.md, "The fused linear layer".
"""

import glob
import math
from dataclasses import dataclass

import numpy as np

from fastxent._api import docstrings as docs
from fastxent._api import multiclass
from fastxent._api import validation as v
from fastxent._api.options import CrossEntropyOptions
from fastxent._core.blas import blas_threads, gemm
from fastxent._core.threads import blas_thread_count, threads_for

# The default chunk (``chunk_rows_for``). BLAS repacks W for every chunk's GEMMs, a cost
# proportional to V * d that only a chunk of many rows amortises (measured on Zen 5, N = 4096,
# d = 512, V = 32000, float32: chunks of 128 rows took 1.4x as long as chunks of 512). So a
# chunk holds at least a CHUNK_BYTES_MIN of logits (or half the last-level cache, if larger),
# and at most CHUNK_ROWS_MAX rows, beyond which nothing is gained but memory.
CHUNK_BYTES_MIN = 64 * 2**20
CHUNK_ROWS_MAX = 512
CHUNK_ROWS_MIN = 16
_FALLBACK_CACHE_BYTES = 8 * 2**20       # when the OS does not say

LINEAR_DOC = """
    Parameters
    ----------
    input : array_like of shape (N, d) or (d,)
        Hidden states, float32 or float64 (other real dtypes are read as float64).
    linear_weight : array_like of shape (V, d)
        The output layer's weight: float32 or float64, `input`'s computation dtype (another
        dtype, or a mismatch, is an error: a large matrix is never converted silently). C- or
        Fortran-contiguous matrices are used in place; others (strided, another byte order)
        are copied once.
    target : array_like
        Integer class labels of shape (N,) (or a scalar for 1-D `input`), any integer dtype;
        or soft targets of shape (N, V).
    linear_bias : array_like of shape (V,), optional
        The output layer's bias, `linear_weight`'s dtype."""

CLASS_OPTIONS_DOC = """
    weight : array_like of shape (V,), optional
        Per-class weights (PyTorch semantics, as for ``cross_entropy``).
    sample_weight : array_like of shape (N,), optional
        Per-row weights (scikit-learn semantics, as for ``cross_entropy``).
    ignore_index : int, optional
        Rows whose label equals it contribute no loss, no gradient and no weight."""

LOSS_OPTIONS_DOC = """
    label_smoothing : float in [0, 1], default=0
        PyTorch's label smoothing.
    reduction : {"mean", "sum", "none"}, default="mean"
    validate : bool, default=True
        Check that soft targets lie in [0, 1] (labels are always checked).
    z_loss, softcap, focal_gamma, focal_alpha
        As for ``cross_entropy``, on the logits ``input @ linear_weight.T + linear_bias``."""

CHUNK_DOC = """
    chunk_rows : int >= 1, optional
        Rows per chunk. None: the rows of 64 MiB of logits or of half the last-level cache,
        whichever is larger, within 16 to 512 rows. The result does not depend on it beyond
        rounding.
    n_threads : int, optional
        Threads for BLAS's GEMMs (set through threadpoolctl for the call) and for the label
        checks: None leaves BLAS at its default; negative counts back from the usable cores.
        The cross-entropy kernel runs on the calling thread, between the GEMMs. BLAS's
        rounding can depend on its thread count: results agree across counts to rounding,
        not bit for bit."""


@dataclass
class LinearProblem:
    """A validated fused call: the GEMM operands and the cross-entropy problem of their
    logits."""

    hidden: np.ndarray              # (N, d), C-contiguous
    weight: np.ndarray              # (V, d), C- or Fortran-contiguous, hidden's dtype
    bias: np.ndarray | None         # (V,), hidden's dtype
    problem: multiclass._Problem    # the logits' targets, options and denominator
    chunk_rows: int
    blas_threads: int | None        # None: BLAS's default

    def chunk_buffer(self):
        """The logits buffer: ``chunk_rows`` rows (at most N) of V."""
        rows = min(self.chunk_rows, self.hidden.shape[0])
        return np.empty((rows, self.weight.shape[0]), dtype=self.hidden.dtype)

    def each_chunk(self, buffer):
        """Yield ``(start, stop, problem, logits)`` for each chunk of rows, in order: the
        logits ``H[start:stop] @ W.T + b`` computed into the first rows of `buffer` (BLAS on
        the call's threads), and the cross-entropy problem of those rows.

        The problem's kernel runs on the calling thread. It is about 2 % of a call, and
        OpenMP threads woken right after a GEMM wait for BLAS's idle threads, which keep
        spinning on every other core: measured on 2 cores (Zen 5, N = 4096, V = 32000), a
        kernel on 2 threads stalled about 10 ms per chunk, and cost 0.37 s with chunks of 128
        rows against 0.06 s on one thread.
        """
        n_rows = self.hidden.shape[0]
        with blas_threads(self.blas_threads):
            for start in range(0, n_rows, self.chunk_rows):
                stop = min(n_rows, start + self.chunk_rows)
                logits = buffer[:stop - start]
                gemm(self.hidden[start:stop], self.weight.T, logits)
                if self.bias is not None:
                    np.add(logits, self.bias, out=logits)
                yield (start, stop, multiclass.rows(self.problem, start, stop, n_threads=1),
                       logits)


def last_level_cache_bytes():
    """The size of the CPU's largest cache, in bytes (8 MiB when the OS does not say)."""
    sizes = []
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size")):
        try:
            with open(index) as file:
                text = file.read().strip()
            sizes.append(int(text[:-1]) * 1024 if text.endswith("K") else int(text))
        except (OSError, ValueError):
            pass
    return max(sizes, default=_FALLBACK_CACHE_BYTES)


def chunk_rows_for(n_classes, itemsize, cache_bytes=None):
    """The default ``chunk_rows``: the rows of logits that fill ``CHUNK_BYTES_MIN`` or half
    the last-level cache, whichever is larger, within [CHUNK_ROWS_MIN, CHUNK_ROWS_MAX].

    Parameters
    ----------
    n_classes : int
        V, the logits' row length.
    itemsize : int
        Bytes per logit (4 for float32, 8 for float64).
    cache_bytes : int, optional
        The cache size; ``last_level_cache_bytes()`` by default.

    Returns
    -------
    int
    """
    cache = last_level_cache_bytes() if cache_bytes is None else cache_bytes
    chunk_bytes = max(CHUNK_BYTES_MIN, cache // 2)
    return min(CHUNK_ROWS_MAX, max(CHUNK_ROWS_MIN, chunk_bytes // (n_classes * itemsize)))


def _layer_array(value, name, input_dtype, dtype):
    """`value`, a float32 or float64 array of `dtype` (the input's computation dtype), as the
    GEMMs read it: a C- or Fortran-contiguous array of that dtype as it is, others copied
    once (a strided view, a non-native byte order). Any other dtype is an error: a weight
    matrix is never converted to another precision silently."""
    arr = v.as_array(value, name)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise TypeError(f"{name} must be float32 or float64 (the GEMMs' dtype), got "
                        f"{arr.dtype}: convert it once, e.g. {name}.astype(np.{dtype})")
    if v.computation_dtype(arr.dtype) != dtype:
        computed = "" if input_dtype == dtype else f" (computed in {dtype})"
        raise TypeError(f"{name} is {arr.dtype.name} but input is {input_dtype.name}{computed}: "
                        f"both must be float32 or both float64 (fastxent does not convert a "
                        f"weight matrix silently; convert one of them once)")
    if arr.dtype == dtype and (arr.flags.c_contiguous or arr.flags.f_contiguous):
        return arr
    return np.asarray(arr, dtype=dtype, order="C")


def prepare(input, linear_weight, target, linear_bias, options, *, sample_weight=None,
            chunk_rows=None):
    """Validate a fused call (every check before anything is written).

    Parameters
    ----------
    input, linear_weight, target, linear_bias, sample_weight, chunk_rows
        As for ``linear_cross_entropy``.
    options : CrossEntropyOptions or EvaluationOptions
        The call's options, from_logits and the last class axis.

    Returns
    -------
    LinearProblem
    """
    input_dtype = v.as_array(input, "input").dtype
    hidden = v.float_input(input, "input")
    if hidden.ndim not in (1, 2):
        raise ValueError(f"input must have shape (N, d) or (d,), got {hidden.shape}")
    weight = _layer_array(linear_weight, "linear_weight", input_dtype, hidden.dtype)
    if weight.ndim != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"linear_weight must have shape (V, {hidden.shape[-1]}) for input of "
                         f"shape {hidden.shape} (d = {hidden.shape[-1]}), got {weight.shape}")
    n_classes = weight.shape[0]
    if n_classes == 0:
        raise ValueError("linear_weight has no rows: there are no classes")
    bias = None
    if linear_bias is not None:
        bias = _layer_array(linear_bias, "linear_bias", input_dtype, hidden.dtype)
        if bias.shape != (n_classes,):
            raise ValueError(f"linear_bias must have shape ({n_classes},) for linear_weight of "
                             f"shape {weight.shape}, got {bias.shape}")
    if chunk_rows is None:
        chunk_rows = chunk_rows_for(n_classes, hidden.itemsize)
    else:
        chunk_rows = v.check_int(chunk_rows, "chunk_rows", low=1, must="be None or an int >= 1")
    rows_shape = hidden.shape[:-1]
    n_rows = math.prod(rows_shape)
    problem = multiclass._Problem(
        options=options, x=None, dtype=hidden.dtype, shape=rows_shape + (n_classes,),
        n_classes=n_classes, n_inner=1, rows_shape=rows_shape,
        eps=options.clip_eps(hidden.dtype),
        n_threads=threads_for(n_rows * n_classes, options.n_threads))
    multiclass.prepare_targets(problem, target, sample_weight)
    return LinearProblem(hidden=hidden.reshape(n_rows, hidden.shape[-1]), weight=weight, bias=bias,
                         problem=problem, chunk_rows=chunk_rows,
                         blas_threads=blas_thread_count(options.n_threads))


GRADIENTS = ("input", "linear_weight", "linear_bias")


def _wanted_gradients(wrt):
    """The names of `wrt` (a name or a sequence of them, each of ``GRADIENTS``), as a set."""
    names = (wrt,) if isinstance(wrt, str) else wrt
    try:
        names = set(names)
    except TypeError:
        raise TypeError(f"wrt must be a name or a sequence of names among {GRADIENTS}, got "
                        f"{wrt!r}") from None
    unknown = [name for name in names if name not in GRADIENTS]
    if unknown:
        raise ValueError(f"wrt names {unknown[0]!r}: the gradients are with respect to "
                         f"{', '.join(GRADIENTS)}")
    return names


def _gradient_outputs(out, lp, wrt):
    """The three gradient buffers: the caller's (checked, before anything is written) or new
    ones; None for those not in `wrt`, and for the bias's without a bias."""
    p = lp.problem
    wanted = _wanted_gradients(wrt)
    if out is None:
        out = (None, None, None)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError("out must be None or a tuple (grad_input, grad_linear_weight, "
                        "grad_linear_bias)")
    if lp.bias is None and out[2] is not None:
        raise ValueError("out[2] (grad_linear_bias) must be None without linear_bias")
    for index, name in enumerate(GRADIENTS):
        if out[index] is not None and name not in wanted:
            raise ValueError(f"out[{index}] (grad_{name}) is given but wrt does not name "
                             f"{name!r}")
    # The input, shaped as the caller gave it: v.output lets grad_input be the input itself
    # (each chunk's rows are read before they are written) and refuses any other overlap.
    input_view = lp.hidden.reshape(p.rows_shape + lp.hidden.shape[1:])
    read = {"linear_weight": lp.weight, "linear_bias": lp.bias,
            "target": p.soft if p.labels is None else p.labels, "weight": p.class_weight,
            "sample_weight": p.sample_weight}
    shapes = {"grad_input": input_view.shape, "grad_linear_weight": lp.weight.shape,
              "grad_linear_bias": None if lp.bias is None else lp.bias.shape}
    grads = {}
    for index, (given, (name, shape)) in enumerate(zip(out, shapes.items(), strict=True)):
        if shape is None or GRADIENTS[index] not in wanted:
            grads[name] = None
            continue
        label = f"out[{index}] ({name})"
        grads[name] = v.output(given, input_view, (), shape=shape, name=label)
        if given is None:
            continue
        for other, array in {**read, **grads}.items():
            if other != name and array is not None and np.may_share_memory(given, array):
                raise ValueError(f"{label} must not overlap {other}")
    return list(grads.values())


def _run(lp, grads=(None, None, None)):
    """Compute the loss, and fill the gradient buffers of `grads` that are not None."""
    p = lp.problem
    n_rows = lp.hidden.shape[0]
    row_loss = np.empty(n_rows) if p.options.reduction == "none" else None
    buffer = lp.chunk_buffer()              # allocated before any output is written
    grad_input, grad_weight, grad_bias = grads
    any_grad = any(grad is not None for grad in grads)
    bias_sum = None
    if grad_input is not None:
        grad_input = grad_input.reshape(lp.hidden.shape)
    if grad_bias is not None:
        bias_sum = np.zeros(grad_bias.shape)             # float64 across the chunks
    if grad_weight is not None:
        grad_weight.fill(0)
    total = 0.0
    for start, stop, rows, logits in lp.each_chunk(buffer):
        total += multiclass.run_rows(rows, logits, logits if any_grad else None,
                                     None if row_loss is None else row_loss[start:stop])
        # grad_W before grad_H: grad_input may be the input, whose chunk is read here.
        if grad_weight is not None:
            gemm(logits.T, lp.hidden[start:stop], grad_weight, accumulate=True)
        if grad_input is not None:
            gemm(logits, lp.weight, grad_input[start:stop])
        if bias_sum is not None:
            bias_sum += logits.sum(axis=0)
    if grad_bias is not None:
        grad_bias[...] = bias_sum
    return multiclass.reduce(p, total, row_loss)


def _options(weight, ignore_index, label_smoothing, reduction, validate, n_threads, z_loss,
             softcap, focal_gamma, focal_alpha):
    return CrossEntropyOptions(
        weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing,
        reduction=reduction, validate=validate, n_threads=n_threads, z_loss=z_loss,
        softcap=softcap, focal_gamma=focal_gamma, focal_alpha=focal_alpha)


@docs.doc(f"""Cross-entropy of a linear layer's logits, from its inputs, without the logits.

    Equal, to rounding, to ``cross_entropy(input @ linear_weight.T + linear_bias, target,
    ...)`` (PyTorch's ``F.linear_cross_entropy``), computed in chunks of rows so that memory
    beyond the inputs is one chunk of logits (``chunk_rows x V``), never ``N x V``.
{LINEAR_DOC}{CLASS_OPTIONS_DOC}{LOSS_OPTIONS_DOC}{CHUNK_DOC}
{docs.RETURNS_LOSS}
    Examples
    --------
    >>> import numpy as np, fastxent
    >>> hidden = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> float(fastxent.linear_cross_entropy(hidden, weight, np.array([0, 1])))  # doctest: +ELLIPSIS
    0.3954...
    """)
def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         sample_weight=None, ignore_index=None, label_smoothing=0.0,
                         reduction="mean", validate=True, chunk_rows=None, n_threads=None,
                         z_loss=0.0, softcap=None, focal_gamma=0.0, focal_alpha=None):
    options = _options(weight, ignore_index, label_smoothing, reduction, validate, n_threads,
                       z_loss, softcap, focal_gamma, focal_alpha)
    lp = prepare(input, linear_weight, target, linear_bias, options,
                 sample_weight=sample_weight, chunk_rows=chunk_rows)
    return _run(lp)


@docs.doc(f"""``linear_cross_entropy`` and its gradients with respect to `input`,
    `linear_weight` and `linear_bias`, in one pass over the rows.

    Each chunk's logits become their gradient in place, then feed two GEMMs:
    ``grad_linear_weight += G.T @ input[chunk]`` and ``grad_input[chunk] = G @ linear_weight``.
    For ``reduction="none"`` the gradients are those of the sum of the per-row losses.
{LINEAR_DOC}{CLASS_OPTIONS_DOC}{LOSS_OPTIONS_DOC}{CHUNK_DOC}
    out : tuple (grad_input, grad_linear_weight, grad_linear_bias), optional
        Buffers for the gradients (so that a training loop allocates none): C-contiguous,
        writeable, shaped like `input`, `linear_weight` and `linear_bias`, of `input`'s
        computation dtype, overlapping neither each other nor anything read (except
        ``grad_input``, which may be `input` itself: it is then overwritten). Any may be None
        (allocated); ``grad_linear_bias`` must be None without `linear_bias`.
    wrt : str or sequence of str, default=("input", "linear_weight", "linear_bias")
        The gradients to compute; the others are returned as None and cost nothing (a frozen
        output layer, ``wrt="input"``, saves one of the three GEMMs).

    Returns
    -------
    loss : scalar, or ndarray of shape (N,) for ``reduction="none"``
    grad_input : ndarray shaped like `input`, or None if `wrt` does not name it
    grad_linear_weight : ndarray of shape (V, d), or None if `wrt` does not name it
    grad_linear_bias : ndarray of shape (V,), or None without `linear_bias` or if `wrt` does
        not name it
    """)
def linear_cross_entropy_loss_and_grad(input, linear_weight, target, *, linear_bias=None,
                                       weight=None, sample_weight=None, ignore_index=None,
                                       label_smoothing=0.0, reduction="mean", validate=True,
                                       chunk_rows=None, n_threads=None, z_loss=0.0, softcap=None,
                                       focal_gamma=0.0, focal_alpha=None, out=None,
                                       wrt=GRADIENTS):
    options = _options(weight, ignore_index, label_smoothing, reduction, validate, n_threads,
                       z_loss, softcap, focal_gamma, focal_alpha)
    lp = prepare(input, linear_weight, target, linear_bias, options,
                 sample_weight=sample_weight, chunk_rows=chunk_rows)
    grads = _gradient_outputs(out, lp, wrt)
    loss = _run(lp, grads)
    return (loss, *grads)
