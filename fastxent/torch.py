"""PyTorch adapter: fastxent's kernels as drop-in ``torch.nn.functional`` losses.

``import fastxent.torch`` needs PyTorch (``fastxent`` itself never imports it)::

    import torch
    import fastxent.torch as fxt

    loss = fxt.cross_entropy(logits, target)      # like torch.nn.functional.cross_entropy
    loss.backward()

Each loss is a :class:`torch.autograd.Function`. Its forward computes the loss **and** the
gradient in one fastxent call on zero-copy NumPy views of the (contiguous, CPU) tensors and
saves the gradient; its backward only scales the saved gradient by ``grad_output``. For
``reduction="none"`` the saved gradient is that of the *sum* of the per-sample losses, which
is multiplied by ``grad_output`` broadcast over the class axis (each sample's gradient only
depends on its own loss), so any ``grad_output`` works.

Inputs the kernels do not cover -- CUDA or other non-CPU tensors, dtypes other than float32
and float64, targets or weights that require grad, mismatched dtypes, weights that do not
broadcast to the input -- go to PyTorch's own function, with a one-time warning saying why.
The losses are differentiable once (``create_graph=True`` double backward raises).
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

import fastxent

__all__ = ["BCEWithLogitsLoss", "CrossEntropyLoss", "binary_cross_entropy_with_logits",
           "cross_entropy"]

_FLOATS = (torch.float32, torch.float64)
_REDUCTIONS = ("none", "mean", "sum")
_warned = set()


def _fallback(name, reason):
    """Warn once per (function, reason) that PyTorch's own loss is used."""
    key = (name, reason)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"fastxent.torch.{name}: {reason}; falling back to "
                      f"torch.nn.functional.{name} (this warning is shown once)",
                      RuntimeWarning, stacklevel=3)


def _np(t):
    """A NumPy view of a CPU tensor (a copy only when it is not contiguous)."""
    return t.detach().resolve_conj().resolve_neg().contiguous().numpy()


def _unsupported(tensors, dtype):
    """Why the fast path cannot take these tensors (None when it can).

    `tensors` maps a name to a tensor or None; every tensor must be a dense CPU tensor of
    `dtype` (when given) not requiring grad, except the input itself.
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
        if t.is_complex():
            return f"{name} is complex"
        if name != "input" and t.requires_grad:
            return f"{name} requires grad (fastxent only differentiates the input)"
        if name in ("input", "weight", "pos_weight") and t.dtype != dtype:
            return (f"{name} has dtype {t.dtype} (fastxent supports float32 and float64 with "
                    f"weights of the input's dtype)")
    if dtype not in _FLOATS:
        return f"input has dtype {dtype} (fastxent supports float32 and float64)"
    return None


def _as_tensor(value, like):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return torch.tensor(value, dtype=like.dtype)


def _scale(grad, grad_output, reduction, class_axis):
    """The input's gradient: the saved gradient scaled by grad_output."""
    if reduction == "none":
        if class_axis is not None and grad_output.dim() > 0:
            grad_output = grad_output.unsqueeze(class_axis)
        return grad * grad_output
    if grad_output.dim() == 0 and grad_output.item() == 1.0:
        return grad          # the usual loss.backward(): no N x C multiply
    return grad * grad_output


# ---- multiclass -----------------------------------------------------------------------------

class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, kwargs):
        loss, grad = fastxent.cross_entropy_loss_and_grad(_np(input), _np(target), **kwargs)
        ctx.grad = torch.from_numpy(grad)
        ctx.reduction = kwargs["reduction"]
        ctx.class_axis = kwargs["axis"] if input.dim() > 1 else None
        return _as_tensor(loss, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return _scale(ctx.grad, grad_output, ctx.reduction, ctx.class_axis), None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
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

    ``size_average`` and ``reduce`` are PyTorch's deprecated arguments; passing them defers to
    PyTorch.

    Returns
    -------
    Tensor
        The loss: a scalar, or per-sample losses for ``reduction="none"``.
    """
    def torch_loss():
        return F.cross_entropy(input, target, weight=weight, size_average=size_average,
                               ignore_index=ignore_index, reduce=reduce, reduction=reduction,
                               label_smoothing=label_smoothing)

    reason = None
    if size_average is not None or reduce is not None:
        reason = "the deprecated size_average/reduce arguments are not supported"
    elif reduction not in _REDUCTIONS:
        return torch_loss()                       # PyTorch's own error
    elif not isinstance(input, torch.Tensor):
        return torch_loss()
    else:
        reason = _unsupported({"input": input, "target": target, "weight": weight},
                              input.dtype)
    if reason is None:
        if target.is_floating_point():
            if target.dtype != input.dtype or target.shape != input.shape:
                reason = "probability targets must have the input's dtype and shape"
        elif target.dtype != torch.int64:
            reason = f"class-index targets have dtype {target.dtype} (expected int64)"
        if input.dim() == 0:
            reason = "input is 0-d"
    if reason is not None:
        _fallback("cross_entropy", reason)
        return torch_loss()
    kwargs = dict(weight=None if weight is None else _np(weight),
                  ignore_index=None if target.is_floating_point() else int(ignore_index),
                  label_smoothing=float(label_smoothing), reduction=reduction,
                  axis=1 if input.dim() > 1 else 0, validate=False)
    try:
        if input.requires_grad and torch.is_grad_enabled():
            return _CrossEntropy.apply(input, target, kwargs)
        return _as_tensor(fastxent.cross_entropy(_np(input), _np(target), **kwargs), input)
    except (ValueError, TypeError):
        return torch_loss()          # bad shapes or labels: PyTorch's own error message


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`fastxent.torch.cross_entropy`."""

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


# ---- binary ---------------------------------------------------------------------------------

class _BinaryCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, kwargs):
        loss, grad = fastxent.binary_cross_entropy_loss_and_grad(_np(input), _np(target),
                                                                 **kwargs)
        ctx.grad = torch.from_numpy(grad)
        ctx.reduction = kwargs["reduction"]
        return _as_tensor(loss, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return _scale(ctx.grad, grad_output, ctx.reduction, None), None, None


def _broadcasts_to(t, shape):
    if t is None:
        return True
    try:
        return torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        return False


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
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

    ``size_average`` and ``reduce`` are PyTorch's deprecated arguments; passing them defers to
    PyTorch.

    Returns
    -------
    Tensor
        The loss: a scalar, or elementwise losses for ``reduction="none"``.
    """
    def torch_loss():
        return F.binary_cross_entropy_with_logits(input, target, weight=weight,
                                                  size_average=size_average, reduce=reduce,
                                                  reduction=reduction, pos_weight=pos_weight)

    reason = None
    if size_average is not None or reduce is not None:
        reason = "the deprecated size_average/reduce arguments are not supported"
    elif reduction not in _REDUCTIONS or not isinstance(input, torch.Tensor):
        return torch_loss()
    else:
        reason = _unsupported({"input": input, "target": target, "weight": weight,
                               "pos_weight": pos_weight}, input.dtype)
    if reason is None:
        if not isinstance(target, torch.Tensor) or target.shape != input.shape:
            return torch_loss()                   # PyTorch's own error
        if not (_broadcasts_to(weight, input.shape) and _broadcasts_to(pos_weight,
                                                                        input.shape)):
            return torch_loss()                   # PyTorch's own error
        if target.dtype != input.dtype:
            reason = f"target has dtype {target.dtype}, input {input.dtype}"
    if reason is not None:
        _fallback("binary_cross_entropy_with_logits", reason)
        return torch_loss()
    kwargs = dict(weight=None if weight is None else _np(weight),
                  pos_weight=None if pos_weight is None else _np(pos_weight),
                  reduction=reduction, validate=False)
    try:
        if input.requires_grad and torch.is_grad_enabled():
            return _BinaryCrossEntropy.apply(input, target, kwargs)
        return _as_tensor(fastxent.binary_cross_entropy(_np(input), _np(target), **kwargs),
                          input)
    except (ValueError, TypeError):
        return torch_loss()


class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` computed by
    :func:`fastxent.torch.binary_cross_entropy_with_logits`."""

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                reduction=self.reduction,
                                                pos_weight=self.pos_weight)
