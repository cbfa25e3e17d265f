"""The defining formulas of z-loss, logit soft-capping and focal terms, in float64.

``cross_entropy_terms`` and ``binary_terms`` write each loss as its papers and peers define it
(PaLM's z-loss as Liger-Kernel reduces it, Gemma 2's soft-cap, Keras's categorical focal loss,
torchvision's sigmoid focal loss with Keras's label smoothing), with the operations of the
array module `xp` (NumPy or PyTorch), so that the same text gives a NumPy value and, through
PyTorch's autograd, the exact gradient and Hessian diagonal (``autograd_terms``). They are
written for clarity, not for precision: confident rows lose digits here that fastxent keeps
(tests of those use mpmath).
"""

import numpy as np

from reference import _rows_and_target_weights


def _np_ops():
    return dict(tanh=np.tanh, exp=np.exp, log=np.log, log1p=np.log1p,
                lse=lambda u: np.logaddexp.reduce(u, axis=1), clip=np.clip,
                sigmoid=lambda u: 1.0 / (1.0 + np.exp(-u)),
                softplus=lambda u: np.logaddexp(0.0, u), asarray=np.asarray)


def _torch_ops():
    import torch
    return dict(tanh=torch.tanh, exp=torch.exp, log=torch.log, log1p=torch.log1p,
                lse=lambda u: torch.logsumexp(u, 1), clip=torch.clamp, sigmoid=torch.sigmoid,
                softplus=lambda u: torch.logaddexp(torch.zeros_like(u), u),  # (F.softplus is
                # linear beyond its threshold 20: its second derivative there is 0)
                asarray=lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64)))


def _reduce(per_row, reduction, denominator):
    if reduction == "none":
        return per_row
    total = per_row.sum()
    return total if reduction == "sum" else total / denominator


def cross_entropy_terms(z, target, ops, *, from_logits=True, weight=None, sample_weight=None,
                        ignore_index=None, label_smoothing=0.0, eps=1e-12, reduction="mean",
                        z_loss=0.0, softcap=None, focal_gamma=0.0, focal_alpha=None):
    """Multiclass loss of (N, C) rows `z` (an `ops` array): per row
    ``sum_c alpha_c a_c (1 - p_c)^gamma (-log p_c) + s z_loss lse(u)^2``, ``u`` the
    soft-capped logits, ``a`` the target weights of the classic options (sample weight
    included); ``mean`` divides the first part by the classic denominator and the z-loss by
    the counted rows' sample weights."""
    zn = np.zeros(z.shape)
    _, _, a, denominator = _rows_and_target_weights(zn, target, weight, sample_weight,
                                                    ignore_index, label_smoothing, -1)
    n_rows, n_classes = zn.shape
    s = np.ones(n_rows) if sample_weight is None else np.asarray(sample_weight, float).ravel()
    counted = np.ones(n_rows, bool)
    if np.asarray(target).dtype.kind in "iu" and ignore_index is not None:
        counted = np.asarray(target).ravel() != ignore_index
    alpha = np.ones(n_classes) if focal_alpha is None else np.broadcast_to(focal_alpha,
                                                                          (n_classes,))
    a = ops["asarray"](a * alpha)
    if from_logits:
        u = softcap * ops["tanh"](z / softcap) if softcap else z
        lse = ops["lse"](u)
        logp = u - lse[:, None]
    else:
        logp = ops["log"](ops["clip"](z, eps, 1 - eps))
    p = ops["exp"](logp)
    terms = a * (1 - p) ** focal_gamma * -logp if focal_gamma else a * -logp
    per_row = terms.sum(1)
    z_rows = ops["asarray"](np.zeros(n_rows))
    if z_loss:
        z_rows = ops["asarray"](z_loss * s * counted) * lse ** 2
    if reduction == "mean":
        return per_row.sum() / denominator + z_rows.sum() / np.sum(s * counted)
    return _reduce(per_row + z_rows, reduction, denominator)


def binary_terms(x, y, ops, *, from_logits=True, weight=None, pos_weight=None,
                 label_smoothing=0.0, eps=1e-12, reduction="mean", softcap=None,
                 focal_gamma=0.0, focal_alpha=None):
    """Binary loss of `x` (an `ops` array): ``alpha_t (1 - p_t)^gamma BCE``, torchvision's
    ``sigmoid_focal_loss`` on soft-capped logits, with Keras's smoothed target
    ``y' = y (1 - e) + e / 2`` in ``p_t``, ``alpha_t`` and the cross-entropy."""
    ys = ops["asarray"](np.asarray(y, float) * (1 - label_smoothing) + label_smoothing / 2)
    pw = 1.0 if pos_weight is None else ops["asarray"](pos_weight)
    if from_logits:
        u = softcap * ops["tanh"](x / softcap) if softcap else x
        p = ops["sigmoid"](u)
        bce = (1 - ys) * ops["softplus"](u) + pw * ys * ops["softplus"](-u)
    else:
        p = ops["clip"](x, eps, 1 - eps)
        bce = -(pw * ys * ops["log"](p) + (1 - ys) * ops["log1p"](-p))
    if weight is not None:
        bce = bce * ops["asarray"](weight)
    p_t = p * ys + (1 - p) * (1 - ys)
    loss = (1 - p_t) ** focal_gamma * bce if focal_gamma else bce
    if focal_alpha is not None and focal_alpha >= 0:
        loss = (focal_alpha * ys + (1 - focal_alpha) * (1 - ys)) * loss
    return _reduce(loss, reduction, np.size(y))


def numpy_terms(formula, x, target, **options):
    """The loss of `formula` in NumPy float64."""
    return formula(np.asarray(x, np.float64), target, _np_ops(), **options)


def autograd_terms(formula, x, target, **options):
    """``(loss, grad, hess)`` of `formula` at `x` by PyTorch's autograd in float64; the
    Hessian's diagonal by differentiating each class's gradient column (rows, and binary
    elements, are independent of each other)."""
    import torch
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    loss = formula(xt, target, _torch_ops(), **options)
    total = loss.sum()
    (grad,) = torch.autograd.grad(total, xt, create_graph=True)
    if xt.dim() == 2:
        columns = [torch.autograd.grad(grad[:, j].sum(), xt, retain_graph=True)[0][:, j]
                   for j in range(xt.shape[1])]
        hess = torch.stack(columns, 1)
    else:
        (hess,) = torch.autograd.grad(grad.sum(), xt)
    return loss.detach().numpy(), grad.detach().numpy(), hess.detach().numpy()
