"""PyTorch on CPU tensors that share the data's memory, on ``threads`` threads.

Follows the interface of :mod:`fastxent._bench.builders`. torch is imported only when a
builder runs, so that this module imports without it.
"""

from fastxent._bench.builders import metrics
from fastxent._bench.workloads import (
    ECE_BINS,
    TERMS_OPTIONS,
    TOP_K,
)

MODULE = "torch"


def _tensors(data, threads, softmax, requires_grad):
    """Set torch's thread count and wrap the data (shared memory) as tensors."""
    import torch
    torch.set_num_threads(threads)
    inputs, targets = data.rows() if softmax else (data.inputs, data.targets)
    return torch.from_numpy(inputs).requires_grad_(requires_grad), torch.from_numpy(targets)


def _loss_and_grad(loss_fn, inputs, targets):
    def run():
        inputs.grad = None
        loss = loss_fn(inputs, targets)
        loss.backward()
        return loss.item()
    return run


def _loss_only(loss_fn, inputs, targets):
    import torch

    def run():
        with torch.no_grad():
            return loss_fn(inputs, targets).item()
    return run


def softmax_ce(data, threads):
    import torch.nn.functional as F
    return _loss_and_grad(F.cross_entropy, *_tensors(data, threads, True, True))


def softmax_grad_hess(data, threads):
    """softmax, then p - onehot(y) and p (1 - p) with in-place tensor operations."""
    import torch
    logits, labels = _tensors(data, threads, True, False)
    rows = torch.arange(len(labels))
    grad, hess = torch.empty_like(logits), torch.empty_like(logits)

    def run():
        torch.softmax(logits, dim=1, out=grad)
        torch.sub(1, grad, out=hess)
        hess.mul_(grad)
        grad[rows, labels] -= 1
        return float(hess.sum(dtype=torch.float64))
    return run


def softmax_terms(data, threads):
    """The soft-capped, z-loss and focal cross-entropy as PyTorch code writes it (Gemma 2's
    cap, PaLM's z-loss on the log-sum-exp, a focal factor), differentiated by autograd."""
    import torch
    cap, z_loss, gamma = (TERMS_OPTIONS[k] for k in ("softcap", "z_loss", "focal_gamma"))

    def loss_fn(logits, labels):
        u = cap * torch.tanh(logits / cap)
        lse = torch.logsumexp(u, dim=1)
        logp = u.gather(1, labels[:, None])[:, 0] - lse
        focal = (-torch.expm1(logp)) ** gamma
        return (-(focal * logp)).mean() + z_loss * (lse ** 2).mean()
    return _loss_and_grad(loss_fn, *_tensors(data, threads, True, True))


def softmax_ce_loss(data, threads):
    import torch.nn.functional as F
    return _loss_only(F.cross_entropy, *_tensors(data, threads, True, False))


def binary_ce(data, threads):
    import torch.nn.functional as F
    return _loss_and_grad(
        F.binary_cross_entropy_with_logits, *_tensors(data, threads, False, True))


def binary_logloss(data, threads):
    import torch.nn.functional as F
    return _loss_only(F.binary_cross_entropy, *_tensors(data, threads, False, False))


def evaluate_metrics(data, threads):
    import torch
    import torch.nn.functional as F
    logits, labels = _tensors(data, threads, True, False)
    edges = torch.arange(ECE_BINS + 1, dtype=logits.dtype) / ECE_BINS

    def run():
        with torch.no_grad():
            loss = F.cross_entropy(logits, labels)
            log_probs = F.log_softmax(logits, dim=1)
            probs = log_probs.exp()
            correct = logits.argmax(dim=1) == labels
            top_k = logits.topk(TOP_K, dim=1).indices
            top_k_accuracy = (top_k == labels[:, None]).any(dim=1).float().mean()
            entropy = -(probs * log_probs).sum(dim=1).mean()
            label_probs = probs.gather(1, labels[:, None]).squeeze(1)
            brier = (probs.square().sum(dim=1) - 2 * label_probs + 1).mean()
            confidence = probs.amax(dim=1)
            bins = (torch.bucketize(confidence, edges) - 1).clamp(0, ECE_BINS - 1)
            confidence_sums = torch.bincount(bins, weights=confidence, minlength=ECE_BINS)
            correct_sums = torch.bincount(bins, weights=correct.to(confidence.dtype),
                                          minlength=ECE_BINS)
            ece = (correct_sums - confidence_sums).abs().sum() / len(labels)
            return metrics(loss, loss.exp(), correct.float().mean(), top_k_accuracy, entropy,
                           brier, ece)
    return run



def _linear_tensors(data, threads, requires_grad):
    hidden, labels = _tensors(data, threads, False, requires_grad)
    import torch
    return hidden, torch.from_numpy(data.linear_weight).requires_grad_(requires_grad), labels


def linear_ce(data, threads):
    """``F.linear_cross_entropy``'s reference path (the N x V logits), forward and backward."""
    import torch.nn.functional as F
    hidden, weight, labels = _linear_tensors(data, threads, True)

    def run():
        hidden.grad = weight.grad = None
        loss = F.linear_cross_entropy(hidden, weight, labels)
        loss.backward()
        return loss.item()
    return run


def linear_eval(data, threads):
    """``F.linear_cross_entropy``'s forward under ``no_grad``."""
    import torch
    import torch.nn.functional as F
    hidden, weight, labels = _linear_tensors(data, threads, False)

    def run():
        with torch.no_grad():
            return F.linear_cross_entropy(hidden, weight, labels).item()
    return run
