"""NumPy: the single-threaded vectorised reference (``threads`` is ignored).

Follows the interface of :mod:`fastxent._bench.builders`. Its Brier score and calibration
error are shared with :mod:`fastxent._bench.impl_sklearn`, which has neither.
"""

import numpy as np

from fastxent._bench.builders import metrics
from fastxent._bench.workloads import (
    ECE_BINS,
    TOP_K,
)

MODULE = "numpy"


def brier_score(probabilities, label_probabilities):
    """Mean Brier score with one-hot targets: ``sum_c p_c**2 - 2 p_y + 1`` per row.

    Parameters
    ----------
    probabilities : ndarray of shape (n_rows, n_classes)
    label_probabilities : ndarray of shape (n_rows,)
        The probability of each row's label.

    Returns
    -------
    numpy scalar
    """
    return np.mean((probabilities ** 2).sum(axis=1) - 2 * label_probabilities + 1)


def calibration_error(confidence, correct):
    """Expected calibration error over ``ECE_BINS`` equal-width confidence bins.

    Parameters
    ----------
    confidence : ndarray of shape (n_rows,)
        The largest probability of each row.
    correct : ndarray of bool of shape (n_rows,)
        Whether each row's prediction is its label.

    Returns
    -------
    numpy scalar
    """
    edges = np.arange(ECE_BINS + 1) / ECE_BINS
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, ECE_BINS - 1)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=ECE_BINS)
    correct_sums = np.bincount(bins, weights=correct, minlength=ECE_BINS)
    return np.abs(correct_sums - confidence_sums).sum() / len(confidence)


def _softmax_loss_into(logits, labels, exp_out):
    """Mean softmax CE; leaves ``exp(logits - row max)`` in ``exp_out``.

    Returns
    -------
    loss : numpy scalar
    row_sum : ndarray of shape (n_rows, 1)
        Row sums of ``exp_out``.
    """
    row_max = logits.max(axis=1, keepdims=True)
    np.subtract(logits, row_max, out=exp_out)
    np.exp(exp_out, out=exp_out)
    row_sum = exp_out.sum(axis=1, keepdims=True)
    label_logit = logits[np.arange(len(labels)), labels]
    loss = np.mean(np.log(row_sum[:, 0]) + row_max[:, 0] - label_logit)
    return loss, row_sum


def softmax_ce(data, threads):
    logits, labels = data.rows()
    grad = np.empty_like(logits)
    rows = np.arange(len(labels))

    def run():
        loss, row_sum = _softmax_loss_into(logits, labels, grad)
        np.multiply(grad, 1 / (row_sum * len(labels)), out=grad)
        grad[rows, labels] -= 1 / len(labels)
        return float(loss)
    return run


def softmax_grad_hess(data, threads):
    """Gradient p - onehot(y) and Hessian p (1 - p) of the summed loss, into buffers."""
    logits, labels = data.rows()
    grad, hess = np.empty_like(logits), np.empty_like(logits)
    rows = np.arange(len(labels))

    def run():
        _, row_sum = _softmax_loss_into(logits, labels, grad)
        np.divide(grad, row_sum, out=grad)
        np.subtract(1, grad, out=hess)
        np.multiply(hess, grad, out=hess)
        grad[rows, labels] -= 1
        return float(hess.sum(dtype=np.float64))
    return run


def softmax_ce_loss(data, threads):
    logits, labels = data.rows()
    work = np.empty_like(logits)
    return lambda: float(_softmax_loss_into(logits, labels, work)[0])


def binary_ce(data, threads):
    logits, targets = data.inputs, data.targets
    grad = np.empty_like(logits)

    def run():
        np.logaddexp(0, logits, out=grad)
        loss = (grad.sum() - np.dot(logits, targets)) / len(logits)
        np.multiply(logits, 0.5, out=grad)
        np.tanh(grad, out=grad)
        np.multiply(grad, 0.5, out=grad)
        np.add(grad, 0.5, out=grad)
        np.subtract(grad, targets, out=grad)
        np.divide(grad, len(logits), out=grad)
        return float(loss)
    return run


def binary_logloss(data, threads):
    probabilities, targets = data.inputs, data.targets
    log_p = np.empty_like(probabilities)
    log_q = np.empty_like(probabilities)

    def run():
        np.log(probabilities, out=log_p)
        np.negative(probabilities, out=log_q)
        np.log1p(log_q, out=log_q)
        total = np.dot(targets, log_p) + log_q.sum() - np.dot(targets, log_q)
        return float(-total / len(probabilities))
    return run


def evaluate_metrics(data, threads):
    logits, labels = data.rows()
    rows = np.arange(len(labels))

    def run():
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        probs = np.exp(log_probs)
        label_log_probs = log_probs[rows, labels]
        loss = -label_log_probs.mean()
        correct = logits.argmax(axis=1) == labels
        top_k = np.argpartition(logits, -TOP_K, axis=1)[:, -TOP_K:]
        top_k_accuracy = (top_k == labels[:, None]).any(axis=1).mean()
        entropy = -(probs * log_probs).sum(axis=1).mean()
        brier = brier_score(probs, np.exp(label_log_probs))
        ece = calibration_error(probs.max(axis=1), correct)
        return metrics(loss, np.exp(loss), correct.mean(), top_k_accuracy, entropy, brier, ece)
    return run

