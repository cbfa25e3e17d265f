"""PyTorch adapter: fastxent's kernels as drop-in ``torch.nn.functional`` losses.

``import fastxent.torch`` needs PyTorch (``fastxent`` itself never imports it)::

    import torch
    import fastxent.torch as fxt

    loss = fxt.cross_entropy(logits, target)      # like torch.nn.functional.cross_entropy
    loss.backward()

Each loss is a :class:`torch.autograd.Function`. Its forward computes the loss **and** the
gradient in one fastxent call on zero-copy NumPy views of the (contiguous, CPU) tensors and
saves the gradient, with the target and weights (editing one in place before backward makes
backward raise, as in PyTorch; the binary loss saves its input too, as PyTorch's does, while
``cross_entropy`` checks its input only in a backward that reads it again). Its backward
scales the saved gradient by ``grad_output``. For ``reduction="none"`` the saved gradient is
that of the *sum* of the per-sample losses, which is multiplied by ``grad_output`` broadcast
over the class axis (each sample's gradient only depends on its own loss), so any
``grad_output`` works.

The saved gradient is handed out once and then forgotten: the usual ``loss.backward()`` gets
it without a copy, and a later backward through the same graph (``retain_graph=True``)
computes it again, so a hook or caller that edits a returned gradient in place never changes
another one.

The losses are differentiable to any order. With ``create_graph=True`` backward returns
fastxent's gradient ``g`` as ``g + a * (p - p.detach())``, where ``p`` is the softmax (or
sigmoid) of the input computed by PyTorch and ``a`` the constant factor of ``p`` in the exact
gradient (from the targets, weights, smoothing and reduction). The added term is exactly zero
(NaN in a row holding a NaN or +inf logit, as PyTorch's gradient there), so the value is
fastxent's, and its derivatives are those of the exact gradient, computed by PyTorch's
autograd: Hessian-vector products, gradient penalties and higher derivatives are exact.

Both losses also take fastxent's newer options as keywords PyTorch's functions do not have:
``z_loss``, ``softcap``, ``focal_gamma`` and ``focal_alpha`` (``cross_entropy``; the binary loss
all but ``z_loss``), with ``fastxent.cross_entropy``'s semantics. Their gradient is not linear
in ``p``: with ``create_graph=True`` the added term is ``h - h.detach()``, ``h`` the gradient
of the loss's defining formula written in PyTorch (``_cross_entropy_formula``,
``_binary_formula``), which is also the loss of inputs the kernels do not cover.

``linear_cross_entropy`` (``torch.nn.functional.linear_cross_entropy``) takes a linear layer's
inputs: one ``fastxent.linear_cross_entropy_loss_and_grad`` pass, in chunks of rows without
the N x V logits, gives the loss and the gradients for ``input``, ``linear_weight`` and
``linear_bias``, saved and scaled as above. For ``reduction="none"`` backward runs the pass
with ``grad_output`` as the rows' weights (the weight's gradient mixes the rows, so it cannot
be scaled afterwards). With ``create_graph=True`` each gradient gets ``h - h.detach()``, ``h``
its autograd gradient of PyTorch's reference ``cross_entropy(linear(...))``.

Inputs the kernels do not cover -- CUDA or other non-CPU tensors, tensors without storage
(inside ``torch.func`` transforms such as ``vmap`` and ``grad``), forward-mode dual tensors,
dtypes other than float32 and float64, targets or weights that require grad, mismatched
dtypes, weights that do not broadcast to the input, a K-dimensional ``linear_weight`` -- go
to PyTorch's own function, with a one-time warning saying why.
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd import forward_ad

import fastxent
from fastxent._api import options as fastxent_options
from fastxent._api import validation as v

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "binary_cross_entropy_with_logits",
           "cross_entropy", "linear_cross_entropy"]
# PyTorch 2.13 added F.linear_cross_entropy, its options and its module. With an older
# PyTorch, linear_cross_entropy still works (PyTorch's side is its defining formula) and
# LinearCrossEntropyLoss is not defined.
_PYTORCH_LINEAR_CE = getattr(F, "linear_cross_entropy", None)
_PYTORCH_LINEAR_OPTIONS = getattr(torch.nn, "LinearCrossEntropyOptions", None)

_FLOATS = (torch.float32, torch.float64)
_REDUCTIONS = ("none", "mean", "sum")
# The tensors that must have the input's dtype (targets are checked by each loss).
_FLOAT_TENSORS = ("input", "weight", "pos_weight", "linear_weight", "linear_bias")
_warned = set()


def _fallback(name, reason, formula=False):
    """Warn once per (function, reason) that PyTorch computes the loss: its own function, or
    with the newer options (`formula`) the defining formula in PyTorch operations."""
    key = (name, reason, formula)
    if key not in _warned:
        _warned.add(key)
        target = ("the loss's formula in PyTorch operations" if formula
                  else f"torch.nn.functional.{name}")
        warnings.warn(f"fastxent.torch.{name}: {reason}; falling back to {target} (this "
                      f"warning is shown once)", RuntimeWarning, stacklevel=3)


def _is_int(value):
    """Whether fastxent takes `value` as an int (PyTorch raises its own error otherwise)."""
    try:
        v.check_int(value, "ignore_index")
    except TypeError:
        return False
    return True


def _np(t):
    """A NumPy view of a CPU tensor (a copy only when it is not contiguous)."""
    return t.detach().resolve_conj().resolve_neg().contiguous().numpy()


def _unsupported(tensors, dtype, differentiable=("input",)):
    """Why the fast path cannot take these tensors (None when it can).

    `tensors` maps a name to a tensor or None; every tensor must be a dense CPU tensor, the
    input and weights of `dtype`, and only those named in `differentiable` may require grad.
    """
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            return f"{name} is not a tensor"
        if t.device.type != "cpu":
            return f"{name} is on device {t.device.type!r} (fastxent runs on the CPU)"
        if t.layout != torch.strided:
            return f"{name} has layout {t.layout} (only dense tensors are supported)"
        if not _has_storage(t):
            return (f"{name} is a tensor without storage, as inside torch.func transforms "
                    f"(vmap, grad, jacrev, ...)")
        if forward_ad.unpack_dual(t).tangent is not None:
            return f"{name} carries a forward-mode tangent (torch.autograd.forward_ad)"
        if t.is_complex():
            return f"{name} is complex"
        if name not in differentiable and t.requires_grad:
            return (f"{name} requires grad (fastxent only differentiates "
                    f"{_names(differentiable)})")
        if name in _FLOAT_TENSORS and t.dtype != dtype:
            return (f"{name} has dtype {t.dtype} (fastxent supports float32 and float64 with "
                    f"weights of the input's dtype)")
    if dtype not in _FLOATS:
        return f"input has dtype {dtype} (fastxent supports float32 and float64)"
    return None


def _names(differentiable):
    """The differentiated tensors in words: "the input", or "input, linear_weight and ..."."""
    if differentiable == ("input",):
        return "the input"
    return ", ".join(differentiable[:-1]) + " and " + differentiable[-1]


def _has_storage(t):
    """Whether `t` has memory NumPy can read (torch.func's wrapped tensors do not)."""
    try:
        t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return False
    return True


def _as_tensor(value, like):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return torch.tensor(value, dtype=like.dtype)


def _take_grad(ctx, compute_grad):
    """The gradient the forward saved, handed over to the caller, who may edit it in place.

    The saved tensor is given out once and forgotten; a later backward through the same graph
    (``retain_graph=True``) gets a fresh one from `compute_grad`, so no tensor handed out is
    ever read again.
    """
    grad, ctx.grad = ctx.grad, None
    return compute_grad() if grad is None else grad


def _differentiable(grad, factor, prob):
    """fastxent's gradient `grad` made differentiable to any order.

    The exact gradient is ``factor * prob - c``, with `prob` the softmax (or sigmoid) of the
    input computed by PyTorch (in the autograd graph) and `factor` and ``c`` constant. The
    result ``grad + factor * (prob - prob.detach())`` has the value of `grad` (the added term is
    zero where `prob` is finite) and the derivatives of the exact gradient.
    """
    return grad + factor * (prob - prob.detach())


def _scale(grad, grad_output, reduction, class_axis):
    """The input's gradient: `grad` (the caller's own tensor) scaled by `grad_output`."""
    if reduction == "none":
        if class_axis is not None and grad_output.dim() > 0:
            grad_output = grad_output.unsqueeze(class_axis)
        return grad * grad_output
    if (grad_output.dim() == 0 and not grad_output.requires_grad
            and _has_storage(grad_output) and grad_output.item() == 1.0):
        return grad          # the usual loss.backward(): no N x C multiply
    return grad * grad_output


# ---- multiclass -----------------------------------------------------------------------------

def _ce_kwargs(weight, options):
    return dict(weight=None if weight is None else _np(weight), validate=False, **options)


def _ce_factor(input, target, weight, options):
    """Each row's factor of softmax(input) in the exact gradient, with a length-1 class axis.

    The reduced loss is ``sum over rows r and classes c of a[r, c] * -log softmax(z[r])[c]``,
    the constants ``a`` holding the target, label smoothing, class weights, ignored rows and
    the mean's denominator, so its gradient is ``A[r] * softmax(z[r]) - a[r]`` with
    ``A[r] = sum over c of a[r, c]``: this returns ``A``.
    """
    axis = options["axis"]
    n_classes = input.shape[axis]
    smoothing = options["label_smoothing"]
    if weight is None:
        weight = torch.ones(n_classes, dtype=input.dtype)
    if target.is_floating_point():
        class_shape = [1] * input.dim()
        class_shape[axis] = n_classes
        soft = target * (1 - smoothing) + smoothing / n_classes
        factor = (soft * weight.view(class_shape)).sum(axis, keepdim=True)
        if options["reduction"] == "mean":
            factor = factor / (input.numel() // n_classes)        # the number of rows
        return factor
    kept = target != options["ignore_index"]
    target_weight = weight[torch.where(kept, target, 0)]
    factor = (1 - smoothing) * target_weight + smoothing / n_classes * weight.sum()
    if options["reduction"] == "mean":
        factor = factor / torch.where(kept, target_weight, 0).sum()
    return torch.where(kept, factor, 0).unsqueeze(axis)


_TERMS = ("z_loss", "softcap", "focal_gamma", "focal_alpha")


def _has_terms(options):
    """Whether the options hold z-loss, soft-capping or focal terms (None: no options)."""
    return options is not None and (options.get("z_loss", 0) != 0
                                    or options.get("softcap") is not None
                                    or options.get("focal_gamma", 0) != 0
                                    or options.get("focal_alpha") is not None)


def _checked_terms(make_options, **terms):
    """The newer options as fastxent checks them (its errors name the option), as a dict."""
    checked = make_options(**terms)
    return {name: getattr(checked, name) for name in terms}


def _class_view(values, input, axis):
    """A per-class (C,) constant shaped to broadcast along the class axis of `input` (a number
    broadcasts as it is)."""
    if not isinstance(values, torch.Tensor) and np.ndim(values) == 0:
        return float(values)
    shape = [1] * input.dim()
    shape[axis] = input.shape[axis]
    if isinstance(values, torch.Tensor):
        return values.to(dtype=input.dtype, device=input.device).reshape(shape)
    return torch.tensor(np.array(values), dtype=input.dtype, device=input.device).reshape(shape)


def _cross_entropy_formula(input, target, weight, options):
    """``fastxent.cross_entropy`` with every option written in PyTorch operations.

    The loss of inputs the kernels do not cover when the newer options are used, and the
    function whose autograd derivatives the fast path's higher-order gradients take.
    """
    axis, n_classes = options["axis"], input.shape[options["axis"]]
    cap, gamma, alpha = options["softcap"], options["focal_gamma"], options["focal_alpha"]
    smoothing = options["label_smoothing"]
    u = cap * torch.tanh(input / cap) if cap is not None else input
    logp = torch.log_softmax(u, axis)
    w = torch.ones(n_classes, dtype=input.dtype, device=input.device) if weight is None else weight
    if target.is_floating_point():
        kept = torch.ones(logp.sum(axis).shape, dtype=torch.bool, device=input.device)
        t = target * (1 - smoothing) + smoothing / n_classes
        denominator = kept.sum()
    else:
        kept = target != options["ignore_index"]
        label = torch.where(kept, target, 0).long()
        hard = F.one_hot(label, n_classes).movedim(-1, axis).to(input.dtype)
        t = (hard * (1 - smoothing) + smoothing / n_classes) * kept.unsqueeze(axis)
        denominator = torch.where(kept, w[label], 0).sum()
    a = t * _class_view(w, input, axis)
    if alpha is not None:
        a = a * _class_view(alpha, input, axis)
    terms = -a * logp
    if gamma:
        terms = terms * _focal_factor(-torch.expm1(logp), gamma)
    per_row = terms.sum(axis)
    z_rows = options["z_loss"] * torch.logsumexp(u, axis) ** 2 * kept
    if options["reduction"] == "none":
        return per_row + z_rows
    if options["reduction"] == "sum":
        return per_row.sum() + z_rows.sum()
    return _mean(per_row.sum(), denominator) + _mean(z_rows.sum(), kept.sum())


def _focal_factor(q, gamma):
    """``q**gamma`` for ``q = 1 - p``, with q held at the dtype's smallest normal number: where
    a confident row rounds q to 0, ``q**gamma`` (gamma < 1) has an infinite slope, and autograd
    would form 0 * inf; the factor's value there stays below 1e-19 (float32) or 1e-154."""
    return q.clamp_min(torch.finfo(q.dtype).tiny) ** gamma


def _mean(total, denominator):
    """``total / denominator``, NaN over no counted row (as fastxent's mean) with a zero
    derivative there, as fastxent's gradient."""
    empty = denominator == 0
    nan = torch.where(empty, torch.full_like(total, torch.nan), torch.zeros_like(total))
    return total / torch.where(empty, torch.ones_like(denominator), denominator) + nan


def _formula_term(formula, input, *args):
    """``h - h.detach()`` with ``h`` the autograd gradient of ``formula(input, *args)`` (its
    sum): zero in value, the formula's derivatives in the graph."""
    loss = formula(input, *args)
    (exact,) = torch.autograd.grad(loss.sum(), input, create_graph=True)
    return exact - exact.detach()


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, options):
        loss, grad = fastxent.cross_entropy_loss_and_grad(_np(input), _np(target),
                                                          **_ce_kwargs(weight, options))
        # Target and weights as PyTorch saves them (editing one makes backward raise); the
        # input as PyTorch's cross_entropy does not save it: only a backward that reads it
        # again (retain_graph, create_graph) checks that it was not edited in place.
        ctx.save_for_backward(target, weight)
        ctx.input, ctx.input_version = input, input._version
        ctx.options = options
        ctx.grad = torch.from_numpy(grad)
        return _as_tensor(loss, input)

    @staticmethod
    def backward(ctx, grad_output):
        target, weight = ctx.saved_tensors           # raises if one was edited in place
        options = ctx.options

        def saved_input():
            if ctx.input._version != ctx.input_version:
                raise RuntimeError(
                    "fastxent.torch.cross_entropy: the input was modified by an inplace "
                    "operation after the forward, and this backward (retain_graph or "
                    "create_graph) needs it")
            return ctx.input

        grad = _take_grad(ctx, lambda: torch.from_numpy(fastxent.cross_entropy_grad(
            _np(saved_input()), _np(target), **_ce_kwargs(weight, options))))
        if torch.is_grad_enabled():                  # create_graph=True
            input = saved_input()
            if _has_terms(options):
                grad = grad + _formula_term(_cross_entropy_formula, input, target, weight,
                                            options)
            else:
                grad = _differentiable(grad, _ce_factor(input, target, weight, options),
                                       torch.softmax(input, options["axis"]))
        return _scale(grad, grad_output, options["reduction"], options["axis"]), None, None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                  softcap=None, focal_gamma=0.0, focal_alpha=None):
    """``torch.nn.functional.cross_entropy`` computed by fastxent on CPU tensors.

    Parameters
    ----------
    input : Tensor
        Logits of shape (C,), (N, C) or (N, C, d1, ...): float32 or float64 on the CPU for the
        fast path.
    target : Tensor
        Class indices (int64) of shape (), (N,) or (N, d1, ...), or class probabilities of the
        input's shape and dtype.
    weight : Tensor of shape (C,), optional
        Per-class weights.
    ignore_index : int, default=-100
        Target value that contributes no loss and no gradient (class indices only).
    reduction : {"mean", "sum", "none"}, default="mean"
    label_smoothing : float in [0, 1], default=0
    z_loss, softcap, focal_gamma, focal_alpha
        As for ``fastxent.cross_entropy`` (keywords PyTorch does not have). `focal_alpha` is
        a number or a sequence, array or tensor of C numbers.

    ``size_average`` and ``reduce`` are PyTorch's deprecated arguments; passing them defers to
    PyTorch (not with the newer options).

    Returns
    -------
    Tensor
        The loss: a scalar, or per-sample losses for ``reduction="none"``.
    """
    alpha_tensor = focal_alpha if isinstance(focal_alpha, torch.Tensor) else None
    if alpha_tensor is not None:                 # checked (and used by the kernels) as float64
        focal_alpha = alpha_tensor.detach().to("cpu", torch.float64).numpy()
    terms = _checked_terms(fastxent_options.CrossEntropyOptions, z_loss=z_loss, softcap=softcap,
                           focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    with_terms = _has_terms(terms)

    def pytorch_loss():
        return F.cross_entropy(input, target, weight=weight, size_average=size_average,
                               ignore_index=ignore_index, reduce=reduce, reduction=reduction,
                               label_smoothing=label_smoothing)

    def torch_loss():
        if not with_terms:
            return pytorch_loss()
        formula_terms = terms if alpha_tensor is None else dict(terms, focal_alpha=alpha_tensor)
        return _cross_entropy_formula(input, target, weight, _torch_options(
            input, target, ignore_index, label_smoothing, reduction, formula_terms))

    def pytorch_error():
        """PyTorch's own error for arguments it refuses (then its loss, or the formula's)."""
        loss = pytorch_loss()
        return torch_loss() if with_terms else loss

    reason = None
    if with_terms and (size_average is not None or reduce is not None):
        raise ValueError("fastxent.torch.cross_entropy: the deprecated size_average/reduce "
                         "arguments do not combine with z_loss, softcap or focal terms")
    if size_average is not None or reduce is not None:
        reason = "the deprecated size_average/reduce arguments are not supported"
    elif reduction not in _REDUCTIONS:
        return pytorch_error()
    elif (not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor)
          or not _is_int(ignore_index)
          or (target.is_floating_point() and ignore_index >= 0)):
        # PyTorch's own error: a non-integer ignore_index (int() would truncate it), or a
        # class ignore_index with probability targets (PyTorch refuses it).
        return pytorch_error()
    else:
        reason = _unsupported({"input": input, "target": target, "weight": weight},
                              input.dtype)
    if reason is None and alpha_tensor is not None and alpha_tensor.requires_grad:
        reason = "focal_alpha requires grad (fastxent only differentiates the input)"
    if reason is None:
        if target.is_floating_point():
            if target.dtype != input.dtype or target.shape != input.shape:
                reason = "probability targets must have the input's dtype and shape"
        elif target.dtype != torch.int64:
            reason = f"class-index targets have dtype {target.dtype} (expected int64)"
        if input.dim() == 0:
            reason = "input is 0-d"
    if reason is not None:
        _fallback("cross_entropy", reason, with_terms)
        return torch_loss()
    options = _torch_options(input, target, ignore_index, label_smoothing, reduction, terms)
    try:
        if input.requires_grad and torch.is_grad_enabled():
            return _CrossEntropy.apply(input, target, weight, options)
        return _as_tensor(fastxent.cross_entropy(_np(input), _np(target),
                                                 **_ce_kwargs(weight, options)), input)
    except (ValueError, TypeError):
        if with_terms:
            raise                    # fastxent's error: PyTorch has no such loss
        return torch_loss()          # bad shapes or labels: PyTorch's own error message


def _torch_options(input, target, ignore_index, label_smoothing, reduction, terms):
    """fastxent's keywords for a call of ``cross_entropy`` (class axis 1, or 0 for (C,))."""
    return dict(ignore_index=(None if target.is_floating_point()
                              else v.check_int(ignore_index, "ignore_index")),
                label_smoothing=float(label_smoothing), reduction=reduction,
                axis=1 if input.dim() > 1 else 0, **terms)


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`fastxent.torch.cross_entropy`, with
    its keywords ``z_loss``, ``softcap``, ``focal_gamma`` and ``focal_alpha`` too."""

    def __init__(self, *args, z_loss=0.0, softcap=None, focal_gamma=0.0, focal_alpha=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.z_loss, self.softcap = z_loss, softcap
        self.focal_gamma, self.focal_alpha = focal_gamma, focal_alpha

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             z_loss=self.z_loss, softcap=self.softcap,
                             focal_gamma=self.focal_gamma, focal_alpha=self.focal_alpha)


# ---- binary ---------------------------------------------------------------------------------

def _bce_kwargs(weight, pos_weight, reduction, terms):
    return dict(weight=None if weight is None else _np(weight),
                pos_weight=None if pos_weight is None else _np(pos_weight),
                reduction=reduction, validate=False, **terms)


def _binary_formula(input, target, weight, pos_weight, reduction, terms):
    """``fastxent.binary_cross_entropy`` with logits and the newer options in PyTorch
    operations (torchvision's sigmoid focal loss on soft-capped logits)."""
    cap, gamma, alpha = terms["softcap"], terms["focal_gamma"], terms["focal_alpha"]
    u = cap * torch.tanh(input / cap) if cap is not None else input
    loss = F.binary_cross_entropy_with_logits(u, target, weight=weight, reduction="none",
                                              pos_weight=pos_weight)
    if gamma:
        p = torch.sigmoid(u)
        loss = loss * _focal_factor(p * (1 - target) + (1 - p) * target, gamma)
    if alpha is not None:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _bce_factor(input, target, weight, pos_weight, reduction):
    """The factor of sigmoid(input) in the exact gradient (``weight * (1 + (pos_weight - 1) *
    target)``, over the element count for the mean), of the input's shape."""
    factor = torch.ones_like(target) if pos_weight is None else 1 + (pos_weight - 1) * target
    if weight is not None:
        factor = factor * weight
    if reduction == "mean":
        factor = factor / input.numel()
    return factor


class _BinaryCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, pos_weight, reduction, terms):
        loss, grad = fastxent.binary_cross_entropy_loss_and_grad(
            _np(input), _np(target), **_bce_kwargs(weight, pos_weight, reduction, terms))
        ctx.save_for_backward(input, target, weight, pos_weight)
        ctx.reduction, ctx.terms = reduction, terms
        ctx.grad = torch.from_numpy(grad)
        return _as_tensor(loss, input)

    @staticmethod
    def backward(ctx, grad_output):
        input, target, weight, pos_weight = ctx.saved_tensors    # raises if edited in place
        reduction, terms = ctx.reduction, ctx.terms
        grad = _take_grad(ctx, lambda: torch.from_numpy(fastxent.binary_cross_entropy_grad(
            _np(input), _np(target), **_bce_kwargs(weight, pos_weight, reduction, terms))))
        if torch.is_grad_enabled() and _has_terms(terms):       # create_graph=True
            grad = grad + _formula_term(_binary_formula, input, target, weight, pos_weight,
                                        reduction, terms)
        elif torch.is_grad_enabled():
            grad = _differentiable(grad, _bce_factor(input, target, weight, pos_weight,
                                                     reduction), torch.sigmoid(input))
        return _scale(grad, grad_output, reduction, None), None, None, None, None, None


def _broadcasts_to(t, shape):
    if t is None:
        return True
    try:
        return torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        return False


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None, *, softcap=None,
                                     focal_gamma=0.0, focal_alpha=None):
    """``torch.nn.functional.binary_cross_entropy_with_logits`` computed by fastxent.

    Parameters
    ----------
    input : Tensor
        Logits of any shape: float32 or float64 on the CPU for the fast path.
    target : Tensor
        Targets of the input's shape and dtype (usually in [0, 1]).
    weight : Tensor, optional
        Elementwise weights broadcastable to the input's shape.
    reduction : {"mean", "sum", "none"}, default="mean"
    pos_weight : Tensor, optional
        Weight of the positive term, broadcast along the last axis.
    softcap, focal_gamma, focal_alpha
        As for ``fastxent.binary_cross_entropy`` (keywords PyTorch does not have;
        ``focal_gamma=2, focal_alpha=0.25`` is torchvision's ``sigmoid_focal_loss``).

    ``size_average`` and ``reduce`` are PyTorch's deprecated arguments; passing them defers to
    PyTorch (not with the newer options).

    Returns
    -------
    Tensor
        The loss: a scalar, or elementwise losses for ``reduction="none"``.
    """
    terms = _checked_terms(fastxent_options.LossOptions, softcap=softcap,
                           focal_gamma=focal_gamma, focal_alpha=focal_alpha)
    with_terms = _has_terms(terms)

    def pytorch_loss():
        return F.binary_cross_entropy_with_logits(input, target, weight=weight,
                                                  size_average=size_average, reduce=reduce,
                                                  reduction=reduction, pos_weight=pos_weight)

    def torch_loss():
        if with_terms:
            return _binary_formula(input, target, weight, pos_weight, reduction, terms)
        return pytorch_loss()

    def pytorch_error():
        """PyTorch's own error for arguments it refuses (then its loss, or the formula's)."""
        loss = pytorch_loss()
        return torch_loss() if with_terms else loss

    reason = None
    if with_terms and (size_average is not None or reduce is not None):
        raise ValueError("fastxent.torch.binary_cross_entropy_with_logits: the deprecated "
                         "size_average/reduce arguments do not combine with softcap or focal "
                         "terms")
    if size_average is not None or reduce is not None:
        reason = "the deprecated size_average/reduce arguments are not supported"
    elif reduction not in _REDUCTIONS or not isinstance(input, torch.Tensor):
        return pytorch_error()
    else:
        reason = _unsupported({"input": input, "target": target, "weight": weight,
                               "pos_weight": pos_weight}, input.dtype)
    if reason is None:
        if not isinstance(target, torch.Tensor) or target.shape != input.shape:
            return pytorch_error()
        if not (_broadcasts_to(weight, input.shape) and _broadcasts_to(pos_weight,
                                                                        input.shape)):
            return pytorch_error()
        if target.dtype != input.dtype:
            reason = f"target has dtype {target.dtype}, input {input.dtype}"
    if reason is not None:
        _fallback("binary_cross_entropy_with_logits", reason, with_terms)
        return torch_loss()
    try:
        if input.requires_grad and torch.is_grad_enabled():
            return _BinaryCrossEntropy.apply(input, target, weight, pos_weight, reduction,
                                             terms)
        return _as_tensor(fastxent.binary_cross_entropy(
            _np(input), _np(target), **_bce_kwargs(weight, pos_weight, reduction, terms)), input)
    except (ValueError, TypeError):
        if with_terms:
            raise                    # fastxent's error: PyTorch has no such loss
        return torch_loss()


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` computed by
    :func:`fastxent.torch.binary_cross_entropy_with_logits`, with its keywords ``softcap``,
    ``focal_gamma`` and ``focal_alpha`` too."""

    def __init__(self, *args, softcap=None, focal_gamma=0.0, focal_alpha=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.softcap, self.focal_gamma, self.focal_alpha = softcap, focal_gamma, focal_alpha

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight,
                                                softcap=self.softcap,
                                                focal_gamma=self.focal_gamma,
                                                focal_alpha=self.focal_alpha)


# ---- a linear layer fused with cross-entropy ------------------------------------------------

_LINEAR_PARAMETERS = ("input", "linear_weight", "linear_bias")


def _lce_kwargs(linear_bias, weight, options):
    """fastxent's keywords for a fused call (`options`: ignore_index, label_smoothing,
    reduction)."""
    return dict(linear_bias=None if linear_bias is None else _np(linear_bias),
                weight=None if weight is None else _np(weight), **options)


def _wrt(needed):
    """The fused pass's `wrt`: the parameters whose gradient autograd needs."""
    return tuple(name for name, need in zip(_LINEAR_PARAMETERS, needed, strict=True) if need)


def _fused_grads(input, linear_weight, linear_bias, target, weight, options, needed,
                 sample_weight=None):
    """The gradients for input, linear_weight and linear_bias that `needed` asks for (None
    for the others, and for the bias without one) from one fused pass, as new tensors."""
    _, *grads = fastxent.linear_cross_entropy_loss_and_grad(
        _np(input), _np(linear_weight), _np(target),
        sample_weight=None if sample_weight is None else _np(sample_weight),
        wrt=_wrt(needed), **_lce_kwargs(linear_bias, weight, options))
    return [None if grad is None else torch.from_numpy(grad) for grad in grads]


def _linear_formula(input, linear_weight, linear_bias, target, weight, options):
    """The fused loss as PyTorch defines it, the cross-entropy of ``F.linear``'s logits: the
    function whose autograd derivatives the higher-order gradients take."""
    ignore_index = options["ignore_index"]
    return F.cross_entropy(F.linear(input, linear_weight, linear_bias), target, weight=weight,
                           ignore_index=-100 if ignore_index is None else ignore_index,
                           reduction=options["reduction"],
                           label_smoothing=options["label_smoothing"])


def _formula_grads(saved, options, needed, grad_output):
    """The gradients `needed` of ``_linear_formula`` at the saved tensors, by PyTorch's
    autograd, for `grad_output` (None for the others)."""
    with torch.enable_grad():
        parameters = [None if t is None else t.detach().requires_grad_(need)
                      for t, need in zip(saved[:3], needed, strict=True)]
        wanted = [index for index in range(3) if needed[index]]
        loss = _linear_formula(*parameters, *saved[3:], options)
        found = torch.autograd.grad(loss, [parameters[index] for index in wanted], grad_output)
    grads = [None, None, None]
    for index, grad in zip(wanted, found, strict=True):
        grads[index] = grad
    return grads


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, linear_weight, linear_bias, target, weight, options):
        # Every tensor as PyTorch saves them: editing one in place makes backward raise.
        ctx.save_for_backward(input, linear_weight, linear_bias, target, weight)
        ctx.options = options
        ctx.grads = None
        arrays = (_np(input), _np(linear_weight), _np(target))
        kwargs = _lce_kwargs(linear_bias, weight, options)
        if options["reduction"] == "none":
            # Each row's loss has its own grad_output: backward runs the fused pass with it.
            return _as_tensor(fastxent.linear_cross_entropy(*arrays, **kwargs), input)
        loss, *grads = fastxent.linear_cross_entropy_loss_and_grad(
            *arrays, wrt=_wrt(ctx.needs_input_grad[:3]), **kwargs)
        ctx.grads = [None if grad is None else torch.from_numpy(grad) for grad in grads]
        return _as_tensor(loss, input)

    @staticmethod
    def backward(ctx, grad_output):
        saved = ctx.saved_tensors                    # raises if one was edited in place
        options = ctx.options
        needed = ctx.needs_input_grad[:3]
        # grad_output's own derivatives (create_graph) come from the formula's term below.
        scale = grad_output.detach()
        if options["reduction"] == "none" and not bool(torch.isfinite(scale).all()):
            # An infinite grad_output: the fused pass's form of a row's gradient, sum(a) p - a
            # with a scaled by it, would give inf - inf = NaN where PyTorch's g (p - y) is
            # -inf. PyTorch's own autograd of the formula gives its values.
            grads = _formula_grads(saved, options, needed, scale)
        elif options["reduction"] == "none":
            # The gradient of sum over rows of grad_output[i] * loss[i]: the fused pass with
            # grad_output as sample weights, summed.
            grads = _fused_grads(*saved, dict(options, reduction="sum"), needed,
                                 sample_weight=scale)
        else:
            # Handed out once, as _take_grad; a later backward (retain_graph) computes them
            # again, so no gradient a caller was given is ever read again.
            grads, ctx.grads = ctx.grads, None
            if grads is None:
                grads = _fused_grads(*saved, options, needed)
            grads = [None if grad is None else _scale(grad, scale, options["reduction"], None)
                     for grad in grads]
        grads = [grad if need else None for grad, need in zip(grads, needed, strict=True)]
        if torch.is_grad_enabled():                  # create_graph=True
            wanted = [index for index in range(3) if needed[index]]
            exact = torch.autograd.grad(_linear_formula(*saved, options),
                                        [saved[index] for index in wanted], grad_output,
                                        create_graph=True)
            for index, term in zip(wanted, exact, strict=True):
                grads[index] = grads[index] + (term - term.detach())
        return *grads, None, None, None


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         options=None):
    """``torch.nn.functional.linear_cross_entropy`` computed by fastxent on CPU tensors.

    The loss of ``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)``,
    computed by ``fastxent.linear_cross_entropy_loss_and_grad`` in chunks of rows, without the
    N x V logits. When `input`, `linear_weight` or `linear_bias` requires grad, the same pass
    computes the three gradients (for ``reduction="none"``, backward runs it with
    ``grad_output`` as the rows' weights).

    Parameters
    ----------
    input : Tensor of shape (N, d) or (d,)
        Hidden states: float32 or float64 on the CPU for the fast path.
    linear_weight : Tensor of shape (V, d)
        The output layer's weight, of the input's dtype. A weight of shape (V, d1, ..., dK, d)
        (PyTorch's K-dimensional loss) defers to PyTorch.
    target : Tensor
        Class indices (int64) of shape (N,) or (), or class probabilities of shape (N, V) or
        (V,) and the input's dtype.
    linear_bias : Tensor of shape (V,), optional
        The output layer's bias.
    weight : Tensor of shape (V,), optional
        Per-class weights.
    reduction : {"mean", "sum", "none"}, default="mean"
    ignore_index : int, optional
        Target value that contributes no loss and no gradient (class indices only; None is
        -100 for them, as in PyTorch).
    label_smoothing : float in [0, 1], default=0
    options : torch.nn.LinearCrossEntropyOptions, optional
        PyTorch's chunking options, accepted for compatibility: fastxent always computes in
        chunks of its own size (``fastxent.linear_cross_entropy``'s default ``chunk_rows``),
        and the result does not depend on them. They are passed on where PyTorch computes
        the loss.

    Returns
    -------
    Tensor
        The loss: a scalar, or per-sample losses for ``reduction="none"``.

    Notes
    -----
    Unlike PyTorch's chunked path, the loss is differentiable to any order (the derivatives
    of PyTorch's reference formula are added with ``create_graph=True``) and
    ``retain_graph=True`` works. Inputs the kernels do not cover go to PyTorch's function,
    with a one-time warning.
    """
    if options is not None and (_PYTORCH_LINEAR_OPTIONS is None
                                or not isinstance(options, _PYTORCH_LINEAR_OPTIONS)):
        raise TypeError(f"fastxent.torch.linear_cross_entropy: options must be a "
                        f"torch.nn.LinearCrossEntropyOptions or None, got "
                        f"{type(options).__name__}")

    def pytorch_loss():
        if _PYTORCH_LINEAR_CE is None:           # PyTorch before 2.13: its formula
            return F.cross_entropy(F.linear(input, linear_weight, linear_bias), target,
                                   weight=weight, reduction=reduction,
                                   ignore_index=-100 if ignore_index is None else ignore_index,
                                   label_smoothing=label_smoothing)
        return _PYTORCH_LINEAR_CE(input, linear_weight, target, linear_bias=linear_bias,
                                  weight=weight, reduction=reduction, ignore_index=ignore_index,
                                  label_smoothing=label_smoothing, options=options)

    tensors = {"input": input, "linear_weight": linear_weight, "linear_bias": linear_bias,
               "target": target, "weight": weight}
    if (reduction not in _REDUCTIONS
            or not all(isinstance(t, torch.Tensor) for t in (input, linear_weight, target))
            or (ignore_index is not None and not _is_int(ignore_index))
            or input.dim() not in (1, 2) or linear_weight.dim() < 2):
        return pytorch_loss()                    # PyTorch's own error
    if linear_weight.dim() > 2:
        reason = "linear_weight has more than 2 dimensions (the K-dimensional loss)"
    else:
        reason = _unsupported(tensors, input.dtype, differentiable=_LINEAR_PARAMETERS)
    soft = target.shape == input.shape[:-1] + linear_weight.shape[:1]
    if reason is None:
        if soft:
            if ignore_index is not None:
                return pytorch_loss()            # PyTorch refuses it
            if target.dtype != input.dtype:
                reason = "probability targets must have the input's dtype"
        elif target.dtype != torch.int64:
            reason = f"class-index targets have dtype {target.dtype} (expected int64)"
    if reason is not None:
        _fallback("linear_cross_entropy", reason)
        return pytorch_loss()
    fused_options = dict(ignore_index=(None if soft else -100 if ignore_index is None
                                       else v.check_int(ignore_index, "ignore_index")),
                         label_smoothing=float(label_smoothing), reduction=reduction,
                         validate=False)        # PyTorch takes soft targets of any value
    try:
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in
                                           (input, linear_weight, linear_bias)):
            return _LinearCrossEntropy.apply(input, linear_weight, linear_bias, target, weight,
                                             fused_options)
        return _as_tensor(fastxent.linear_cross_entropy(
            _np(input), _np(linear_weight), _np(target),
            **_lce_kwargs(linear_bias, weight, fused_options)), input)
    except (ValueError, TypeError) as exc:
        loss = pytorch_loss()                    # bad shapes or labels: PyTorch's own error
        _fallback("linear_cross_entropy", f"fastxent refuses the arguments ({exc})")
        return loss


if hasattr(torch.nn, "LinearCrossEntropyLoss"):            # PyTorch 2.13 and later
    __all__.append("LinearCrossEntropyLoss")

    class LinearCrossEntropyLoss(torch.nn.LinearCrossEntropyLoss):
        """``torch.nn.LinearCrossEntropyLoss`` computed by
        :func:`fastxent.torch.linear_cross_entropy` (the same arguments and parameters)."""

        def forward(self, input, target):
            linear_weight = self.linear.weight.reshape(
                (self.num_classes, *self.out_features, self.linear.in_features))
            linear_bias = (None if self.linear.bias is None
                           else self.linear.bias.reshape((self.num_classes, *self.out_features)))
            return linear_cross_entropy(input, linear_weight, target, linear_bias=linear_bias,
                                        weight=self.weight, reduction=self.reduction,
                                        ignore_index=self.ignore_index,
                                        label_smoothing=self.label_smoothing, options=self.options)
