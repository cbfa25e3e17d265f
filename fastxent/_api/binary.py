"""Binary (sigmoid) cross-entropy: ``binary_cross_entropy`` and its gradient functions."""

import math
from dataclasses import dataclass

import numpy as np

from fastxent._api import docstrings as docs
from fastxent._api import validation as v
from fastxent._api.options import LossOptions
from fastxent._core.dispatch import kernels
from fastxent._core.threads import threads_for

# Per-row or per-column weights on rows shorter than this are expanded to one weight per
# element (one copy of the input's size) rather than walked in short segments.
_MIN_SEGMENT = 64

_OPTIONS_DOC = ("""
    Parameters
    ----------
    input : array_like
        Logits (``from_logits=True``) or probabilities, any shape. float32 is computed in
        float32, float64 in float64, other real dtypes in float64.
    target : array_like
        Targets in [0, 1] of the same shape, any real dtype (cast to the input's dtype).
    from_logits : bool, default=True
        Logits use the stable softplus form; probabilities are clipped to ``[eps, 1 - eps]``
        inside the kernel.
    weight : array_like, optional
        Elementwise weights broadcastable to the input's shape (PyTorch semantics: ``mean``
        still divides by the element count). Scalars, full arrays, per-column (last axis) and
        per-row (trailing axis 1) weights are read in place; other broadcasts are expanded
        once.
    pos_weight : array_like, optional
        Weight of the positive term, broadcast along the last axis (PyTorch semantics).
    ignore_index : number, optional
        Elements whose target equals it contribute no loss, no gradient and are not counted
        by ``mean`` (e.g. -1 for missing labels in multi-label data). Targets are compared
        with it in the computation dtype, which must hold it exactly (float32 refuses 0.1;
        pass ``np.float32(0.1)``).
    label_smoothing : float in [0, 1], default=0
        Targets become ``y (1 - e) + e / 2`` (Keras semantics).
    eps : float in [0, 0.5), optional
        Probability clipping bound; None means ``np.finfo(dtype).eps``.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"`` divides by the number of counted elements; NaN when there are none.
    validate : bool, default=True
        Check that targets (and probabilities) lie in [0, 1].""" + docs.N_THREADS
                + docs.SOFTCAP + """
    focal_gamma : float >= 0, default=0
        Focal loss: each element's loss is scaled by ``(1 - p_t)**focal_gamma``, ``p_t`` the
        predicted probability of its (smoothed) target; 0 is plain cross-entropy.
    focal_alpha : float in [0, 1], optional
        torchvision's focal alpha: positives weigh ``alpha``, negatives ``1 - alpha`` (of the
        smoothed target ``y'``: ``alpha y' + (1 - alpha) (1 - y')``); a negative number, as in
        torchvision, means none.""")


@dataclass
class _Weights:
    """A weight array broadcast over (rows, row_len): element (r, l) reads
    ``flat[r * row_step + l * vec]``."""

    flat: np.ndarray | None = None
    row_step: int = 0
    vec: bool = False

    def needs_rows(self, size):
        """True when the weight varies by row or by column (not absent, scalar or full)."""
        return self.flat is not None and self.flat.size not in (1, size)


def _weights(value, shape, dtype, name, segments):
    """Describe `value` broadcast to `shape`; without `segments`, per-row and per-column
    weights are expanded to full arrays."""
    if value is None:
        return _Weights()
    w = v.float_like(value, dtype, name)
    try:
        if np.broadcast_shapes(w.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"{name} of shape {w.shape} does not broadcast to the input's shape "
                         f"{shape}") from None
    padded = (1,) * (len(shape) - w.ndim) + w.shape
    row_len = shape[-1] if shape else 1
    if all(d == 1 for d in padded):
        return _Weights(w.reshape(1), 0, False)
    if padded == shape:
        return _Weights(w.reshape(-1), row_len, True)
    if segments and all(d == 1 for d in padded[:-1]) and padded[-1] == row_len:
        return _Weights(w.reshape(-1), 0, True)
    if segments and padded[-1] == 1 and padded[:-1] == shape[:-1]:
        return _Weights(w.reshape(-1), 1, False)
    full = np.ascontiguousarray(np.broadcast_to(w, shape)).reshape(-1)
    return _Weights(full, row_len, True)


@dataclass
class _Problem:
    """A validated binary call, ready for the kernel."""

    options: LossOptions
    x: np.ndarray
    y: np.ndarray
    weight: _Weights
    pos_weight: _Weights
    row_len: int
    eps: float                      # the clipping bound for x's dtype
    n_threads: int                  # resolved for x's size
    count: int                      # elements not ignored

    @property
    def has_ignore(self):
        return self.options.ignore_index is not None

    @property
    def ignore_value(self):
        """The kernels' ignore value: the option, or 0.0 (unused) when there is none."""
        return 0.0 if self.options.ignore_index is None else self.options.ignore_index


def _prepare(input, target, options, *, weight=None, pos_weight=None):
    """Validate a binary call (every check before any kernel writes); a ``_Problem``.

    `options` is a ``LossOptions``; `weight` and `pos_weight` are the call's arrays.
    """
    x = v.float_input(input)
    y = v.float_like(target, x.dtype, "target")
    if y.shape != x.shape:
        raise ValueError(f"target must have the input's shape {x.shape}, got {y.shape}")
    has_ignore = options.ignore_index is not None
    if has_ignore:
        _check_exact_ignore_value(options.ignore_index, x.dtype)
    threads = threads_for(x.size, options.n_threads)
    row_len = x.shape[-1] if x.ndim else 1
    segments = row_len >= _MIN_SEGMENT
    w = _weights(weight, x.shape, x.dtype, "weight", segments)
    pw = _weights(pos_weight, x.shape, x.dtype, "pos_weight", segments)
    if not (w.needs_rows(x.size) or pw.needs_rows(x.size)):
        row_len = max(x.size, 1)                 # one segment: no row structure needed
    if options.validate:
        v.check_unit_interval(y, "target", threads, options.ignore_index)
        if not options.from_logits:
            v.check_unit_interval(x, "input", threads)
    count = x.size
    if has_ignore:
        count, _ = kernels.outside(y.reshape(-1), options.ignore_index, options.ignore_index,
                                   False, 0.0, threads)
    return _Problem(options, x, y, w, pw, row_len, options.clip_eps(x.dtype), threads, count)


def _check_exact_ignore_value(ignore_value, dtype):
    """Targets are compared with `ignore_value` in `dtype`: a value that `dtype` rounds would
    match other targets (in float32, 1.00000001 would ignore every target 1, 1e-50 every 0)."""
    with np.errstate(over="ignore"):
        rounded = float(dtype.type(ignore_value))
    if rounded != ignore_value:
        hint = f"; pass np.{dtype}({ignore_value!r}) itself" if math.isfinite(rounded) else ""
        raise ValueError(f"ignore_index={ignore_value!r} is not exactly representable in "
                         f"{dtype}, the dtype targets are compared in (it rounds to "
                         f"{rounded!r}){hint}")


def _run(p, grad, hess=None):
    """Run the kernel; the loss (None when `hess` is given: the kernel then computes no loss
    array, and the gradient and second derivatives are scaled as the reduction says)."""
    reduction = p.options.reduction
    loss_out = np.empty_like(p.x) if reduction == "none" and hess is None else None
    grad_scale = 1.0
    if reduction == "mean":
        grad_scale = 1.0 / p.count if p.count else 0.0
    total = kernels.binary_cross_entropy(
        p.x.reshape(-1), p.y.reshape(-1), p.row_len,
        p.weight.flat, p.weight.row_step, p.weight.vec,
        p.pos_weight.flat, p.pos_weight.row_step, p.pos_weight.vec,
        p.options.label_smoothing, p.has_ignore, p.ignore_value, p.options.from_logits, p.eps,
        grad_scale, None if loss_out is None else loss_out.reshape(-1),
        None if grad is None else grad.reshape(-1), p.n_threads,
        None if hess is None else hess.reshape(-1), p.options.softcap or 0.0,
        p.options.focal_gamma, -1.0 if p.options.focal_alpha is None else p.options.focal_alpha)
    if hess is not None:
        return None
    if reduction == "none":
        return loss_out
    if reduction == "sum":
        return p.x.dtype.type(total)
    return p.x.dtype.type(total / p.count if p.count else np.nan)


@docs.doc(f"""Binary cross-entropy ``-w [pw y log p + (1 - y) log(1 - p)]``.
{_OPTIONS_DOC}
{docs.RETURNS_LOSS}
    Examples
    --------
    >>> import numpy as np, fastxent
    >>> float(fastxent.binary_cross_entropy(np.array([0.9]), np.array([1.0]),
    ...                                     from_logits=False))  # doctest: +ELLIPSIS
    0.10536051565...
    """)
def binary_cross_entropy(input, target, *, from_logits=True, weight=None, pos_weight=None,
                         ignore_index=None, label_smoothing=0.0, eps=None, reduction="mean",
                         validate=True, n_threads=None, softcap=None, focal_gamma=0.0,
                         focal_alpha=None):
    options = LossOptions(from_logits=from_logits, ignore_index=ignore_index,
                          label_smoothing=label_smoothing, eps=eps, reduction=reduction,
                          validate=validate, n_threads=n_threads, softcap=softcap,
                          focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    return _run(_prepare(input, target, options, weight=weight, pos_weight=pos_weight), None)


@docs.doc(f"""``binary_cross_entropy`` and its gradient.
{_OPTIONS_DOC}{docs.OUT}
{docs.RETURNS_BOTH}""")
def binary_cross_entropy_loss_and_grad(input, target, *, from_logits=True, weight=None,
                                       pos_weight=None, ignore_index=None, label_smoothing=0.0,
                                       eps=None, reduction="mean", validate=True,
                                       n_threads=None, softcap=None, focal_gamma=0.0,
                                       focal_alpha=None, out=None):
    options = LossOptions(from_logits=from_logits, ignore_index=ignore_index,
                          label_smoothing=label_smoothing, eps=eps, reduction=reduction,
                          validate=validate, n_threads=n_threads, softcap=softcap,
                          focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    p = _prepare(input, target, options, weight=weight, pos_weight=pos_weight)
    grad = v.output(out, p.x, (p.y, p.weight.flat, p.pos_weight.flat))
    return _run(p, grad), grad


@docs.doc(f"""Gradient of ``binary_cross_entropy`` w.r.t. `input`.

    For ``reduction="none"`` it is the gradient of the sum of the element losses. With
    probabilities it is taken with respect to the clipped probability.
{_OPTIONS_DOC}{docs.OUT}
{docs.RETURNS_GRAD}""")
def binary_cross_entropy_grad(input, target, *, from_logits=True, weight=None, pos_weight=None,
                              ignore_index=None, label_smoothing=0.0, eps=None,
                              reduction="mean", validate=True, n_threads=None, softcap=None,
                              focal_gamma=0.0, focal_alpha=None, out=None):
    return binary_cross_entropy_loss_and_grad(
        input, target, from_logits=from_logits, weight=weight, pos_weight=pos_weight,
        ignore_index=ignore_index, label_smoothing=label_smoothing, eps=eps,
        reduction=reduction, validate=validate, n_threads=n_threads, softcap=softcap,
        focal_gamma=focal_gamma, focal_alpha=focal_alpha, out=out)[1]


@docs.doc(f"""Gradient and Hessian diagonal of ``binary_cross_entropy`` w.r.t. `input`.

    The second derivative of each element's loss, in the same pass as the gradient: for
    logits ``w [pw y + (1 - y)] sigmoid(x) sigmoid(-x)`` (scikit-learn's
    ``HalfBinomialLoss.gradient_hessian`` for ``reduction="sum"``, `weight` as its
    ``sample_weight``), for probabilities ``w [pw y / p**2 + (1 - y) / (1 - p)**2]`` at the
    clipped probability; with soft-capping or focal terms the exact second derivative of that
    loss. Both are scaled as the reduction says (``"mean"`` divides by the
    counted elements; ``"none"`` and ``"sum"`` do not); ignored elements give 0.
{_OPTIONS_DOC}{docs.OUT}{docs.HESS_OUT}
{docs.RETURNS_GRAD_HESS}
    Examples
    --------
    >>> import numpy as np, fastxent
    >>> grad, hess = fastxent.binary_cross_entropy_grad_hess(
    ...     np.array([0.0, 2.0]), np.array([1.0, 0.0]), reduction="sum")
    >>> grad, hess
    (array([-0.5       ,  0.88079708]), array([0.25      , 0.10499359]))
    """)
def binary_cross_entropy_grad_hess(input, target, *, from_logits=True, weight=None,
                                   pos_weight=None, ignore_index=None, label_smoothing=0.0,
                                   eps=None, reduction="mean", validate=True, n_threads=None,
                                   softcap=None, focal_gamma=0.0, focal_alpha=None, out=None,
                                   hess_out=None):
    options = LossOptions(from_logits=from_logits, ignore_index=ignore_index,
                          label_smoothing=label_smoothing, eps=eps, reduction=reduction,
                          validate=validate, n_threads=n_threads, softcap=softcap,
                          focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    p = _prepare(input, target, options, weight=weight, pos_weight=pos_weight)
    read = (p.y, p.weight.flat, p.pos_weight.flat)
    grad = v.output(out, p.x, read)
    hess = v.output(hess_out, p.x, read + (grad,), name="hess_out")
    _run(p, grad, hess)
    return grad, hess
