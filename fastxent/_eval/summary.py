"""From an Evaluator's sums to its ``EvaluationResult``: every metric is a ratio of sums, so the
same formulas serve the whole, each class and each group (``slice_metrics``)."""

import math

import numpy as np

from fastxent._core.dispatch import kernels
from fastxent._eval import statistics as st
from fastxent._eval.result import (
    CONCENTRATION_FRACTIONS,
    EvaluationResult,
    SliceTable,
    calibration_bins,
    loss_histogram,
)

_SLOT = {name: index for index, name in enumerate(kernels.EVAL_STATS)}


def _ratio(numerator, denominator):
    """numerator / denominator elementwise, NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / np.where(denominator != 0,
                                                                denominator, 1.0), np.nan)


def slice_metrics(table, kernel_topk, topk, labels):
    """The metrics of each row of a table of slice sums.

    Parameters
    ----------
    table : ndarray of shape (n, slots)
        Rows of sums laid out as ``EVAL_STATS`` and then one correct sum per kernel k.
    kernel_topk : ndarray of int64
        The ks of the correct sums.
    topk : tuple of int
        The ks asked for.
    labels : bool
        Whether the targets are labels (soft targets have no accuracy).

    Returns
    -------
    dict of str to ndarray
        count, weight_sum, loss, loss_se, perplexity, entropy, brier, confidence, and with
        labels accuracy, topk (a dict by k), effective_count.
    """
    col = {name: table[:, index] for name, index in _SLOT.items()}
    weight = col["weight"]
    loss = _ratio(col["loss"], col["loss_weight"])
    with np.errstate(over="ignore", invalid="ignore"):
        perplexity = np.exp(loss)
    out = {
        "count": col["count"].astype(np.int64),
        "weight_sum": weight.copy(),
        "loss": loss,
        "loss_se": st.ratio_se(col["count"], col["loss"], col["loss_weight"], col["loss_sq"],
                               col["loss_cross"], col["loss_weight_sq"]),
        "perplexity": perplexity,
        "entropy": _ratio(col["entropy"], weight),
        "brier": _ratio(col["brier"], weight),
        "confidence": _ratio(col["confidence"], weight),
        "accuracy": None,
        "topk": None,
    }
    if labels:
        correct = {k: table[:, len(_SLOT) + j] for j, k in enumerate(kernel_topk.tolist())}
        out["accuracy"] = _ratio(correct[1], weight)
        out["topk"] = {k: _ratio(correct[k], weight) for k in topk}
        with np.errstate(divide="ignore", invalid="ignore"):
            out["effective_count"] = np.where(col["weight_sq"] > 0,
                                              weight * weight / col["weight_sq"], np.nan)
    return out


def slice_table(keys, table, kernel_topk, topk, labels, predicted=False):
    """A ``SliceTable`` of the rows of `table` that hold a counted row.

    Parameters
    ----------
    keys : ndarray of int64
        The class or group of each row of `table`.
    table, kernel_topk, topk, labels
        As for ``slice_metrics``.
    predicted : bool
        Whether the table counts predictions (a class table): then it has a precision.
    """
    seen = table[:, _SLOT["count"]] > 0
    m = slice_metrics(table[seen], kernel_topk, topk, labels)
    precision = None
    if predicted:
        correct = table[seen, len(_SLOT)]                     # the kernel's k = 1 comes first
        precision = _ratio(correct, table[seen, _SLOT["predicted"]])
    return SliceTable(
        keys=keys[seen], count=m["count"], weight_sum=m["weight_sum"], loss=m["loss"],
        loss_se=m["loss_se"], perplexity=m["perplexity"], entropy=m["entropy"],
        brier=m["brier"], confidence=m["confidence"], accuracy=m["accuracy"], topk=m["topk"],
        calibration_gap=None if m["accuracy"] is None else m["confidence"] - m["accuracy"],
        precision=precision)


def build_result(ev):
    """The ``EvaluationResult`` of an Evaluator's state."""
    labels = ev.target_kind != "soft"
    whole = slice_metrics(ev._stats[None, :ev._n_slots], ev._kernel_topk, ev.topk, labels)
    scalar = {name: (value[0].item() if isinstance(value, np.ndarray) else value)
              for name, value in whole.items() if name != "topk"}
    loss, count = scalar["loss"], scalar["count"]
    accuracy = topk = ece = bins = accuracy_ci = topk_ci = None
    if labels:
        n = scalar["effective_count"]
        accuracy = scalar["accuracy"]
        topk = {k: a[0].item() for k, a in whole["topk"].items()}
        accuracy_ci = st.wilson_interval(accuracy, n)
        topk_ci = {k: st.wilson_interval(a, n) for k, a in topk.items()}
        weight, confidence_sum, correct_sum = ev._bin_sums()
        ece = _ratio(np.abs(correct_sum - confidence_sum).sum(), scalar["weight_sum"]).item()
        bins = calibration_bins(weight, confidence_sum, correct_sum)
    n_bins = kernels.HIST_BINS
    histogram = loss_histogram(ev._histogram[:n_bins], ev._histogram[n_bins:2 * n_bins])
    negative_mass = ev._histogram[2 * n_bins] > 0
    concentration = {q: math.nan if negative_mass or not math.isfinite(loss)
                     else histogram.worst_share(q) for q in CONCENTRATION_FRACTIONS}
    uniform = prior_loss = math.nan
    prior_source = "seen" if ev.options.prior is None else "given"
    if ev.n_classes is not None:
        mass, weight = ev._class_mass, ev.options.weight
        # the mean loss's denominator: Σ_c w_c M_c with labels (in float64 here, so that the
        # uniform baseline is log C exactly), Σ s with soft targets
        denominator = (ev._stats[_SLOT["weight"]] if ev.target_kind == "soft"
                       else float((mass if weight is None else mass * weight).sum()))
        uniform = st.baseline_loss(mass, weight, np.ones(ev.n_classes), denominator)
        prior = ev.options.prior
        if prior is None:
            prior = mass if mass.sum() > 0 else np.full(ev.n_classes, math.nan)
        prior_loss = st.baseline_loss(mass, weight, prior, denominator)
    target_entropy = kl = None
    if not labels:
        target_entropy = _ratio(ev._stats[_SLOT["target_entropy"]], scalar["weight_sum"]).item()
        kl = loss - target_entropy
    keys = np.arange(len(ev._group_table), dtype=np.int64)
    return EvaluationResult(
        loss=loss, perplexity=scalar["perplexity"], accuracy=accuracy, topk=topk,
        entropy=scalar["entropy"], brier=scalar["brier"], ece=ece, ece_bins=bins,
        count=count, weight_sum=scalar["weight_sum"], n_classes=ev.n_classes,
        loss_bits=loss / math.log(2), loss_se=scalar["loss_se"],
        loss_ci=st.normal_interval(loss, scalar["loss_se"]), accuracy_ci=accuracy_ci,
        topk_ci=topk_ci, confidence=scalar["confidence"], uniform_loss=uniform,
        prior_loss=prior_loss, prior_source=prior_source,
        skill=(1.0 - loss / prior_loss) if 0 < prior_loss < math.inf else math.nan,
        target_entropy=target_entropy, kl=kl, concentration=concentration,
        loss_histogram=histogram,
        per_class=(None if ev._class_table is None else slice_table(
            np.arange(ev.n_classes, dtype=np.int64), ev._class_table, ev._kernel_topk,
            ev.topk, labels, predicted=True)),
        confusion=None if ev._confusion is None else ev._confusion.copy(),
        groups=(None if not len(ev._group_table) else slice_table(
            keys, ev._group_table, ev._kernel_topk, ev.topk, labels)))
