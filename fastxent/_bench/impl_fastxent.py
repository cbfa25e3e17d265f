"""fastxent itself, through its public functions, on ``threads`` threads.

Follows the interface of :mod:`fastxent._bench.builders`; the other implementations are
compared with this one.
"""

import numpy as np

import fastxent
from fastxent._bench.builders import metrics, n_classes, one_xgboost_round
from fastxent._bench.workloads import (
    EVALUATE_TOPK,
    SLICE_GROUPS,
    TERMS_OPTIONS,
    TOP_K,
)

MODULE = "fastxent"


def _loss_and_grad(loss_and_grad, data, threads):
    """Time ``loss_and_grad`` writing its gradient into one buffer made up front."""
    grad = np.empty_like(data.inputs)

    def run():
        loss, _ = loss_and_grad(data.inputs, data.targets, out=grad, n_threads=threads)
        return float(loss)
    return run


def softmax_ce(data, threads):
    return _loss_and_grad(fastxent.cross_entropy_loss_and_grad, data, threads)


def softmax_ce_loss(data, threads):
    return lambda: float(fastxent.cross_entropy(data.inputs, data.targets, n_threads=threads))


def binary_ce(data, threads):
    return _loss_and_grad(fastxent.binary_cross_entropy_loss_and_grad, data, threads)


def binary_logloss(data, threads):
    return lambda: float(fastxent.binary_cross_entropy(
        data.inputs, data.targets, from_logits=False, n_threads=threads))


def evaluate_metrics(data, threads):
    def run():
        result = fastxent.evaluate(data.inputs, data.targets, topk=EVALUATE_TOPK,
                                   n_threads=threads)
        return metrics(result.loss, result.perplexity, result.accuracy, result.topk[TOP_K],
                       result.entropy, result.brier, result.ece)
    return run


def evaluate_slices(data, threads):
    """``evaluate`` with the per-class table and SLICE_GROUPS random groups (seeded)."""
    logits, labels = data.rows()
    groups = np.random.default_rng(1).integers(0, SLICE_GROUPS, size=len(labels))
    return lambda: fastxent.evaluate(logits, labels, topk=EVALUATE_TOPK, per_class=True,
                                     groups=groups, n_threads=threads).loss


def compare(data, threads):
    """``compare`` of the logits with a second model's (the logits scaled by 0.9)."""
    other = data.inputs * data.inputs.dtype.type(0.9)
    return lambda: fastxent.compare(data.inputs, other, data.targets, topk=EVALUATE_TOPK,
                                    n_threads=threads).a.loss


def softmax_grad_hess(data, threads):
    logits, labels = data.rows()
    grad, hess = np.empty_like(logits), np.empty_like(logits)

    def run():
        fastxent.cross_entropy_grad_hess(logits, labels, reduction="sum", n_threads=threads,
                                         out=grad, hess_out=hess)
        return float(hess.sum(dtype=np.float64))
    return run


def softmax_terms(data, threads):
    def loss_and_grad(logits, labels, **kwargs):
        return fastxent.cross_entropy_loss_and_grad(logits, labels, **TERMS_OPTIONS, **kwargs)
    return _loss_and_grad(loss_and_grad, data, threads)


def xgboost_round(data, threads):
    import fastxent.xgboost
    objective = fastxent.xgboost.softmax_objective(n_classes(data), n_threads=threads)
    return one_xgboost_round(data, threads, objective)


def linear_ce(data, threads):
    """The fused call, writing its gradients into buffers made up front."""
    out = (np.empty_like(data.inputs), np.empty_like(data.linear_weight), None)

    def run():
        loss, *_ = fastxent.linear_cross_entropy_loss_and_grad(
            data.inputs, data.linear_weight, data.targets, n_threads=threads, out=out)
        return float(loss)
    return run


def linear_eval(data, threads):
    return lambda: float(fastxent.linear_cross_entropy(
        data.inputs, data.linear_weight, data.targets, n_threads=threads))
