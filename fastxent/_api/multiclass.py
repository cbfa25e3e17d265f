"""Multiclass (softmax) cross-entropy: ``cross_entropy`` and its gradient functions."""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from fastxent._api import docstrings as docs
from fastxent._api import validation as v
from fastxent._api.options import CrossEntropyOptions
from fastxent._core.dispatch import kernels
from fastxent._core.threads import threads_for
from fastxent._warnings import warn

_OPTIONS_DOC = """
    Parameters
    ----------
    input : array_like
        Logits (``from_logits=True``) or probabilities, classes along `axis`. float32 is
        computed in float32, float64 in float64, other real dtypes in float64.
    target : array_like
        Integer class labels of any integer dtype, shaped like `input` without `axis`; or soft
        targets (a float array shaped like `input`, cast to its dtype).
    from_logits : bool, default=True
        Whether `input` holds logits (stable log-sum-exp) or probabilities, which are clipped
        to ``[eps, 1 - eps]`` inside the kernel (rows are not renormalised).
    weight : array_like of shape (C,), optional
        Per-class weights (PyTorch semantics: ``mean`` divides by the summed weight of the
        counted rows' true classes; with soft targets it divides by the row count).
    sample_weight : array_like, optional
        Per-row weights shaped like the rows (scikit-learn semantics: ``mean`` divides by
        their sum). With `weight`, a row weighs ``sample_weight * weight[label]``.
    ignore_index : int, optional
        Rows whose label equals it contribute no loss, no gradient and no weight. Integer
        labels only. ``mean`` over no counted row is NaN (``sum`` is 0).
    label_smoothing : float in [0, 1], default=0
        PyTorch's label smoothing: the target becomes ``(1 - e) target + e / C``.
    eps : float in [0, 0.5), optional
        Probability clipping bound; None means ``np.finfo(dtype).eps``.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"none"`` returns the per-row losses (weights applied), shaped like the rows.
    axis : int, default=-1
        The class axis. C-ordered input is walked in place for every axis.
    validate : bool, default=True
        Check that probabilities and soft targets lie in [0, 1] (labels are always checked).
    z_loss : float >= 0, default=0
        PaLM's z-loss: adds ``z_loss * lse**2`` to each counted row, ``lse`` its log-sum-exp
        (Liger-Kernel's ``lse_square_scale``). Not scaled by class weights; ``mean`` divides
        it by the counted rows (their summed `sample_weight`), not by the class-weighted
        denominator. Logits only.""" + docs.SOFTCAP + """
    focal_gamma : float >= 0, default=0
        Focal loss: each target's term is scaled by ``(1 - p)**focal_gamma``, ``p`` the
        predicted probability of that class; 0 is plain cross-entropy.
    focal_alpha : float >= 0 or array_like of shape (C,), optional
        Keras's focal alpha: each class's term is scaled by it (one for every class, or per
        class). Unlike `weight` it does not enter the ``mean``'s denominator.""" + docs.N_THREADS


@dataclass
class _Problem:
    """A validated multiclass call, ready for the kernel."""

    options: CrossEntropyOptions
    x: np.ndarray | None            # C-contiguous, float32 or float64 (None: made per chunk)
    dtype: np.dtype                 # the computation dtype, x's
    shape: tuple                    # the (logical) input's shape
    n_classes: int
    n_inner: int
    rows_shape: tuple
    eps: float                      # the clipping bound for x's dtype
    n_threads: int                  # resolved for x's size
    labels: np.ndarray | None = None        # int64 (rows,)
    soft: np.ndarray | None = None          # like x
    sample_weight: np.ndarray | None = None  # float64 (rows,)
    denominator: float = 0.0
    kernel_weight: np.ndarray | None = None     # see _kernel_weight
    kernel_z_loss: float = 0.0                  # see _kernel_z_loss

    @property
    def class_weight(self):
        return self.options.weight

    @property
    def has_ignore(self):
        return self.options.ignore_index is not None

    @property
    def ignore_index(self):
        """The kernels' ignore_index: the option, or 0 (unused) when there is none."""
        return 0 if self.options.ignore_index is None else self.options.ignore_index


def prepare(input, target, options, *, sample_weight=None):
    """Validate a multiclass call (every check before any kernel writes).

    Parameters
    ----------
    input, target, sample_weight
        As for ``cross_entropy``.
    options : CrossEntropyOptions
        The call's options (already checked on their own).

    Returns
    -------
    _Problem
    """
    x = v.float_input(input)
    n_classes, n_inner, rows_shape = v.class_layout(x, options.axis)
    p = _Problem(options=options, x=x, dtype=x.dtype, shape=x.shape, n_classes=n_classes,
                 n_inner=n_inner, rows_shape=rows_shape, eps=options.clip_eps(x.dtype),
                 n_threads=threads_for(x.size, options.n_threads))
    prepare_targets(p, target, sample_weight)
    if options.validate and not options.from_logits:
        v.check_unit_interval(x, "input", p.n_threads)
    if options.validate and options.from_logits:
        _warn_if_probabilities(x, n_classes, n_inner)
    return p


def prepare_like(input, p):
    """`p`'s call with another input of the same shape: the labels, sample weights and
    options as `p` checked and prepared them (not checked again), `input` checked as
    ``prepare`` checks an input. For integer labels only (soft targets are converted to the
    input's dtype: prepare them with ``prepare``).

    Parameters
    ----------
    input : array_like
        Of `p`'s shape.
    p : _Problem

    Returns
    -------
    _Problem
    """
    if p.labels is None:
        raise ValueError("prepare_like takes a problem with integer labels")
    x = v.float_input(input)
    if x.shape != p.shape:
        raise ValueError(f"the inputs must have the same shape, got {p.shape} and {x.shape}")
    options = p.options
    q = dataclasses.replace(p, x=x, dtype=x.dtype, eps=options.clip_eps(x.dtype),
                            n_threads=threads_for(x.size, options.n_threads))
    q.kernel_weight = _kernel_weight(q)          # in the input's dtype
    if options.validate and not options.from_logits:
        v.check_unit_interval(x, "input", q.n_threads)
    if options.validate and options.from_logits:
        _warn_if_probabilities(x, q.n_classes, q.n_inner)
    return q


def prepare_targets(p, target, sample_weight):
    """Check the target, the class options and `sample_weight` against `p`'s layout, and
    fill `p`'s labels or soft targets, sample weights, denominator and kernel options.

    Parameters
    ----------
    p : _Problem
        Its dtype, shape, classes and rows are set (its input need not be).
    target, sample_weight
        As for ``cross_entropy``.
    """
    options, n_classes, threads = p.options, p.n_classes, p.n_threads
    _prepare_target(p, target)
    if p.has_ignore and p.labels is None:
        raise ValueError("ignore_index applies to integer class labels, not soft targets")
    if p.class_weight is not None and p.class_weight.shape != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},) for {n_classes} classes, "
                         f"got {p.class_weight.shape}")
    alpha = options.focal_alpha
    if isinstance(alpha, np.ndarray) and alpha.shape != (n_classes,):
        raise ValueError(f"focal_alpha must be a number or have shape ({n_classes},) for "
                         f"{n_classes} classes, got shape {alpha.shape}")
    if sample_weight is not None:
        s = v.float_like(sample_weight, np.float64, "sample_weight")
        if s.shape != p.rows_shape:
            raise ValueError(f"sample_weight must have the rows' shape {p.rows_shape}, got "
                             f"{s.shape}")
        p.sample_weight = s.reshape(-1)
    if p.labels is not None:
        first_bad, p.denominator = kernels.check_labels(
            p.labels, n_classes, p.has_ignore, p.ignore_index, p.class_weight,
            p.sample_weight, threads)
        if first_bad >= 0:
            index = np.unravel_index(first_bad, p.rows_shape)
            value = np.asarray(target).reshape(-1)[first_bad]
            raise ValueError(f"target[{', '.join(map(str, index))}] = {value} is not a class "
                             f"index in [0, {n_classes})"
                             + ("" if not p.has_ignore else f" nor ignore_index={p.ignore_index}"))
    else:
        n_rows = math.prod(p.rows_shape)
        p.denominator = float(n_rows if p.sample_weight is None else p.sample_weight.sum())
        if options.validate:
            v.check_unit_interval(p.soft, "target", threads)
    p.kernel_weight = _kernel_weight(p)
    p.kernel_z_loss = _kernel_z_loss(p)


# Rows sampled (evenly spaced) to tell whether logits look like probabilities.
_PROBABILITY_SAMPLE_ROWS = 8


def _warn_if_probabilities(x, n_classes, n_inner):
    """Warn when the sampled rows of logits all lie in [0, 1], sum to 1 and are not all
    one-hot.

    Probabilities passed as logits give a plausible but wrong loss (the softmax of
    probabilities). Up to ``_PROBABILITY_SAMPLE_ROWS`` rows are read, never the whole input.
    """
    if n_classes < 2 or x.size == 0:
        return
    blocks = x.reshape(-1, n_classes, n_inner)
    picked = np.unique(np.linspace(0, blocks.shape[0] - 1,
                                   min(blocks.shape[0], _PROBABILITY_SAMPLE_ROWS)).astype(int))
    rows = blocks[picked, :, 0]
    sums = rows.sum(axis=1, dtype=np.float64)
    if (rows.min() >= 0 and rows.max() <= 1 and np.all(np.abs(sums - 1.0) <= 1e-3)
            and np.any((rows > 0) & (rows < 1))):          # one-hot rows can be logits
        warn("fastxent: the input looks like probabilities (the sampled rows lie in [0, 1] "
               "and sum to 1) but is treated as logits; pass from_logits=False for "
               "probabilities (validate=False silences this check)", UserWarning)


def _prepare_target(p, target):
    t = np.asarray(target)
    if t.dtype.kind in "iu":
        if t.shape != p.rows_shape:
            raise ValueError(f"integer class labels must have shape {p.rows_shape} (input "
                             f"{p.shape} without the class axis), got {t.shape}")
        if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size and t.max() > v.INT64_MAX:
            t = _clamp_uint64_labels(t, p)
        p.labels = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    elif t.dtype.kind == "f":
        if t.shape != p.shape:
            hint = (" (integer class labels need an integer dtype)"
                    if t.shape == p.rows_shape else "")
            raise ValueError(f"soft targets must have the input's shape {p.shape}, got "
                             f"{t.shape}{hint}")
        p.soft = np.ascontiguousarray(t, dtype=p.dtype)
    else:
        raise TypeError(f"target must hold integer class labels or float soft targets, got "
                        f"dtype {t.dtype}")


def _clamp_uint64_labels(t, p):
    """uint64 labels as int64: values beyond int64 become a value that is neither a class nor
    ignore_index, so the label check reports them (with their true value)."""
    out_of_range = v.INT64_MIN if p.ignore_index != v.INT64_MIN else v.INT64_MIN + 1
    big = t > np.uint64(v.INT64_MAX)
    labels = t.astype(np.int64)
    labels[big] = out_of_range
    return labels


def _kernel_weight(p):
    """The kernel's per-class weights (None for all ones): `weight` times `focal_alpha`, in
    the input's dtype. The mean's denominator is `weight`'s alone."""
    alpha = p.options.focal_alpha
    if p.class_weight is None and alpha is None:
        return None
    weight = np.ones(p.n_classes) if p.class_weight is None else p.class_weight
    product = weight * (1.0 if alpha is None else alpha)
    with np.errstate(over="ignore", under="ignore"):
        kernel_weight = product.astype(p.dtype)
    lost = (~np.isfinite(kernel_weight) & np.isfinite(product)) | ((kernel_weight == 0)
                                                                   & (product != 0))
    if alpha is not None and lost.any():
        c = int(np.argmax(lost))
        raise ValueError(f"weight * focal_alpha = {float(product[c])!r} for class {c} does not "
                         f"fit in {p.dtype}, the dtype the kernel reads the class factors in")
    return kernel_weight


def _kernel_z_loss(p):
    """The z-loss scale the kernel applies, so that the ``mean``'s division by the (class-
    weighted) denominator leaves the z-loss divided by the counted rows instead."""
    z_loss = p.options.z_loss
    if z_loss == 0 or p.options.reduction != "mean" or p.class_weight is None or p.labels is None:
        return z_loss
    _, counted_rows = kernels.check_labels(p.labels, p.n_classes, p.has_ignore, p.ignore_index,
                                           None, p.sample_weight, p.n_threads)
    return z_loss * p.denominator / counted_rows if counted_rows != 0 else 0.0


def run(p, grad, hess=None, lse=None):
    """Run the kernel; return the reduced loss (or per-row losses) and fill `grad` (and
    `hess`, the Hessian's diagonal, which needs `grad`, and `lse`, each row's log-sum-exp)."""
    row_loss = np.empty(math.prod(p.rows_shape)) if p.options.reduction == "none" else None
    total = run_rows(p, p.x, grad, row_loss, hess, lse)
    return reduce(p, total, row_loss)


def run_rows(p, x, grad, row_loss=None, hess=None, lse=None):
    """Run the kernel on `x`, the rows `p`'s targets and sample weights hold (all of the
    call's, or a chunk of them: see ``rows``); return the summed (weighted) loss.

    `grad` (and `hess`) are scaled as the call's reduction says, with the whole call's
    denominator; `row_loss` (float64), `lse` and `hess` are filled when given.
    """
    grad_scale = 1.0
    if p.options.reduction == "mean":
        grad_scale = 1.0 / p.denominator if p.denominator != 0 else 0.0
    return kernels.class_cross_entropy(
        x.reshape(-1), p.n_classes, p.n_inner, p.labels,
        None if p.soft is None else p.soft.reshape(-1), p.kernel_weight, p.sample_weight,
        p.has_ignore, p.ignore_index, p.options.label_smoothing, p.options.from_logits, p.eps,
        grad_scale, row_loss, None if grad is None else grad.reshape(-1), p.n_threads,
        None if hess is None else hess.reshape(-1), p.kernel_z_loss,
        p.options.softcap or 0.0, p.options.focal_gamma,
        None if lse is None else lse.reshape(-1))


def rows(p, start, stop, n_threads):
    """`p` restricted to the rows ``start:stop`` of a call whose rows are a flat (N,) batch
    and whose class axis is last: the same options, denominator and kernel options, the
    targets and sample weights of those rows, no input (``run_rows`` takes it)."""
    return dataclasses.replace(
        p, x=None, shape=(stop - start, p.n_classes), rows_shape=(stop - start,),
        n_threads=n_threads,
        labels=None if p.labels is None else p.labels[start:stop],
        soft=None if p.soft is None else p.soft.reshape(-1, p.n_classes)[start:stop],
        sample_weight=None if p.sample_weight is None else p.sample_weight[start:stop])


def reduce(p, total, row_loss):
    """The call's result from the kernel's summed loss (and per-row losses for "none")."""
    reduction = p.options.reduction
    if reduction == "none":
        return row_loss.astype(p.dtype).reshape(p.rows_shape)
    if reduction == "sum":
        return p.dtype.type(total)
    return p.dtype.type(total / p.denominator if p.denominator != 0 else np.nan)


def _lse_output(p, return_lse):
    """The array each row's log-sum-exp goes into (None unless `return_lse`)."""
    if not v.check_flag(return_lse, "return_lse"):
        return None
    if not p.options.from_logits:
        raise ValueError("return_lse needs logits: it is undefined with from_logits=False")
    return np.empty(p.rows_shape, dtype=p.dtype)


@docs.doc(f"""Cross-entropy between `input` and `target` over a class axis.
{_OPTIONS_DOC}{docs.RETURN_LSE}
{docs.RETURNS_LOSS}    lse : ndarray shaped like the rows, only with ``return_lse=True``

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> float(fastxent.cross_entropy(np.array([[0.4, 0.4, 0.2]]), np.array([1]),
    ...                              from_logits=False))  # doctest: +ELLIPSIS
    0.91629073187...
    """)
def cross_entropy(input, target, *, from_logits=True, weight=None, sample_weight=None,
                  ignore_index=None, label_smoothing=0.0, eps=None, reduction="mean", axis=-1,
                  validate=True, n_threads=None, z_loss=0.0, softcap=None, focal_gamma=0.0,
                  focal_alpha=None, return_lse=False):
    options = CrossEntropyOptions(
        from_logits=from_logits, weight=weight, ignore_index=ignore_index,
        label_smoothing=label_smoothing, eps=eps, reduction=reduction, axis=axis,
        validate=validate, n_threads=n_threads, z_loss=z_loss, softcap=softcap,
        focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    p = prepare(input, target, options, sample_weight=sample_weight)
    lse = _lse_output(p, return_lse)
    loss = run(p, None, lse=lse)
    return loss if lse is None else (loss, lse)


@docs.doc(f"""``cross_entropy`` and its gradient in one pass.
{_OPTIONS_DOC}{docs.OUT}{docs.RETURN_LSE}
{docs.RETURNS_BOTH}    lse : ndarray shaped like the rows, only with ``return_lse=True``
""")
def cross_entropy_loss_and_grad(input, target, *, from_logits=True, weight=None,
                                sample_weight=None, ignore_index=None, label_smoothing=0.0,
                                eps=None, reduction="mean", axis=-1, validate=True,
                                n_threads=None, z_loss=0.0, softcap=None, focal_gamma=0.0,
                                focal_alpha=None, out=None, return_lse=False):
    options = CrossEntropyOptions(
        from_logits=from_logits, weight=weight, ignore_index=ignore_index,
        label_smoothing=label_smoothing, eps=eps, reduction=reduction, axis=axis,
        validate=validate, n_threads=n_threads, z_loss=z_loss, softcap=softcap,
        focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    p = prepare(input, target, options, sample_weight=sample_weight)
    lse = _lse_output(p, return_lse)
    grad = v.output(out, p.x, (p.labels, p.soft, p.class_weight, p.sample_weight))
    loss = run(p, grad, lse=lse)
    return (loss, grad) if lse is None else (loss, grad, lse)


@docs.doc(f"""Gradient of ``cross_entropy`` with respect to `input`.

    For ``reduction="none"`` it is the gradient of the sum of the per-row losses. With
    probabilities it is taken with respect to the clipped probability.
{_OPTIONS_DOC}{docs.OUT}
{docs.RETURNS_GRAD}""")
def cross_entropy_grad(input, target, *, from_logits=True, weight=None, sample_weight=None,
                       ignore_index=None, label_smoothing=0.0, eps=None, reduction="mean",
                       axis=-1, validate=True, n_threads=None, z_loss=0.0, softcap=None,
                       focal_gamma=0.0, focal_alpha=None, out=None):
    return cross_entropy_loss_and_grad(
        input, target, from_logits=from_logits, weight=weight, sample_weight=sample_weight,
        ignore_index=ignore_index, label_smoothing=label_smoothing, eps=eps,
        reduction=reduction, axis=axis, validate=validate, n_threads=n_threads, z_loss=z_loss,
        softcap=softcap, focal_gamma=focal_gamma, focal_alpha=focal_alpha, out=out)[1]


@docs.doc(f"""Gradient and Hessian diagonal of ``cross_entropy`` w.r.t. `input`.

    The second derivative of the loss with respect to each input element, in the same pass
    as the gradient (what gradient-boosting libraries use for a multiclass objective). For
    logits a row with target weights ``a`` and probabilities ``p = softmax(z)`` has
    ``sum(a) * p * (1 - p)`` (scikit-learn's ``HalfMultinomialLoss.gradient_hessian`` for
    ``reduction="sum"`` and `sample_weight`); for probabilities ``a / p**2`` at the clipped
    probability. With z-loss, soft-capping or focal terms it is the exact second derivative
    of that loss (see docs/semantics.md). Both are scaled as the reduction says (``"mean"``
    divides by the mean's denominator; ``"none"`` and ``"sum"`` do not); ignored rows give 0.
{_OPTIONS_DOC}{docs.OUT}{docs.HESS_OUT}
{docs.RETURNS_GRAD_HESS}
    Examples
    --------
    >>> import numpy as np, fastxent
    >>> grad, hess = fastxent.cross_entropy_grad_hess(np.array([[0.0, 0.0]]), np.array([1]))
    >>> grad, hess
    (array([[ 0.5, -0.5]]), array([[0.25, 0.25]]))
    """)
def cross_entropy_grad_hess(input, target, *, from_logits=True, weight=None,
                            sample_weight=None, ignore_index=None, label_smoothing=0.0,
                            eps=None, reduction="mean", axis=-1, validate=True, n_threads=None,
                            z_loss=0.0, softcap=None, focal_gamma=0.0, focal_alpha=None,
                            out=None, hess_out=None):
    options = CrossEntropyOptions(
        from_logits=from_logits, weight=weight, ignore_index=ignore_index,
        label_smoothing=label_smoothing, eps=eps, reduction=reduction, axis=axis,
        validate=validate, n_threads=n_threads, z_loss=z_loss, softcap=softcap,
        focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    p = prepare(input, target, options, sample_weight=sample_weight)
    read = (p.labels, p.soft, p.class_weight, p.sample_weight)
    grad = v.output(out, p.x, read)
    hess = v.output(hess_out, p.x, read + (grad,), name="hess_out")
    run(p, grad, hess)
    return grad, hess
