"""scikit-learn: per-sample losses and gradients on ``threads`` threads, reduced to the mean.

Follows the interface of :mod:`fastxent._bench.builders`. scikit-learn (and SciPy) are
imported only when a builder runs, so that this module imports without them.
"""

import numpy as np

from fastxent._bench.builders import metrics
from fastxent._bench.impl_numpy import brier_score, calibration_error
from fastxent._bench.workloads import (
    TOP_K,
)

MODULE = "sklearn"


def _loss_gradient(loss, inputs, targets, threads):
    """Time ``loss.loss_gradient`` into preallocated outputs; labels become input's dtype."""
    y_true = np.ascontiguousarray(targets, dtype=inputs.dtype)
    loss_out = np.empty_like(y_true)
    gradient_out = np.empty_like(inputs)

    def run():
        loss.loss_gradient(y_true=y_true, raw_prediction=inputs, loss_out=loss_out,
                           gradient_out=gradient_out, n_threads=threads)
        return float(loss_out.mean())
    return run


def softmax_ce(data, threads):
    from sklearn._loss.loss import HalfMultinomialLoss
    logits, labels = data.rows()
    return _loss_gradient(
        HalfMultinomialLoss(n_classes=logits.shape[1]), logits, labels, threads)


def softmax_grad_hess(data, threads):
    """``HalfMultinomialLoss.gradient_hessian`` into preallocated outputs."""
    from sklearn._loss.loss import HalfMultinomialLoss
    logits, labels = data.rows()
    loss = HalfMultinomialLoss(n_classes=logits.shape[1])
    y_true = np.ascontiguousarray(labels, dtype=logits.dtype)
    grad, hess = np.empty_like(logits), np.empty_like(logits)

    def run():
        loss.gradient_hessian(y_true=y_true, raw_prediction=logits, gradient_out=grad,
                              hessian_out=hess, n_threads=threads)
        return float(hess.sum(dtype=np.float64))
    return run


def softmax_ce_loss(data, threads):
    from sklearn._loss.loss import HalfMultinomialLoss
    logits, labels = data.rows()
    loss = HalfMultinomialLoss(n_classes=logits.shape[1])
    y_true = labels.astype(logits.dtype)
    loss_out = np.empty_like(y_true)

    def run():
        loss.loss(y_true=y_true, raw_prediction=logits, loss_out=loss_out, n_threads=threads)
        return float(loss_out.mean())
    return run


def binary_ce(data, threads):
    from sklearn._loss.loss import HalfBinomialLoss
    return _loss_gradient(HalfBinomialLoss(), data.inputs, data.targets, threads)


def binary_logloss(data, threads):
    from sklearn.metrics import log_loss
    return lambda: float(log_loss(data.targets, data.inputs))


def evaluate_metrics(data, threads):
    from scipy.special import softmax
    from scipy.stats import entropy
    from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score
    logits, labels = data.rows()
    classes = np.arange(logits.shape[1])
    rows = np.arange(len(labels))

    def run():
        probs = softmax(logits, axis=1)
        loss = log_loss(labels, probs, labels=classes)
        predictions = probs.argmax(axis=1)
        accuracy = accuracy_score(labels, predictions)
        top_k_accuracy = top_k_accuracy_score(labels, probs, k=TOP_K, labels=classes)
        mean_entropy = entropy(probs, axis=1).mean()
        brier = brier_score(probs, probs[rows, labels])
        ece = calibration_error(probs.max(axis=1), predictions == labels)
        return metrics(loss, np.exp(loss), accuracy, top_k_accuracy, mean_entropy, brier, ece)
    return run

