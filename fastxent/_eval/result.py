"""What an evaluation returns: ``EvaluationResult``, its ``CalibrationBins``, its
``LossHistogram`` and its ``SliceTable`` of per-class or per-group metrics."""

import math
from dataclasses import dataclass

import numpy as np

from fastxent._eval import statistics as st

#: The fractions of the worst rows whose share of the loss ``EvaluationResult.concentration``
#: gives.
CONCENTRATION_FRACTIONS = (0.01, 0.1)


@dataclass(frozen=True)
class CalibrationBins:
    """Equal-width confidence bins of the expected calibration error.

    Attributes
    ----------
    edges : ndarray of shape (n_bins + 1,)
        Bin ``b`` holds the confidences in ``(edges[b], edges[b + 1]]``.
    weight : ndarray of shape (n_bins,)
        Summed sample weight of the rows in each bin.
    confidence : ndarray of shape (n_bins,)
        Mean confidence of each bin (NaN when empty).
    accuracy : ndarray of shape (n_bins,)
        Mean accuracy of each bin (NaN when empty).
    """

    edges: np.ndarray
    weight: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    def to_dict(self):
        """The bins as a dict of lists."""
        return {name: getattr(self, name).tolist()
                for name in ("edges", "weight", "confidence", "accuracy")}


@dataclass(frozen=True)
class LossHistogram:
    """The rows' losses in bins of increasing loss: where the total loss comes from.

    Bin 0 holds the losses below ``2**-64`` nats (0 included), then each octave
    ``[2**k, 2**(k+1))`` up to ``2**64`` is cut into 16 equal bins (so the losses of one bin
    differ by less than 6.25 %), and the last bin holds the losses from ``2**64`` up (inf).
    A row's loss is its cross-entropy without class weights (soft targets: its loss, class
    weights included) and its mass is
    ``sample_weight * weight[y]`` (soft targets: ``sample_weight``), its share of the mean
    loss's denominator.

    Attributes
    ----------
    edges : ndarray of shape (n_bins + 1,)
        Bin ``b`` holds the losses in ``[edges[b], edges[b + 1])`` (``edges[0]`` is 0 and
        ``edges[-1]`` inf).
    mass : ndarray of shape (n_bins,)
        The rows' summed mass per bin.
    loss : ndarray of shape (n_bins,)
        The rows' summed mass * loss per bin.
    """

    edges: np.ndarray
    mass: np.ndarray
    loss: np.ndarray

    def worst_share(self, fraction):
        """The share of the total loss carried by the worst `fraction` (in (0, 1]) of the
        rows' mass; exact to within the spread of one bin (see ``docs/evaluation.md``)."""
        return st.worst_share(self.mass, self.loss, fraction)

    def curve(self):
        """The loss concentration curve, from the worst rows down.

        Returns
        -------
        row_fraction, loss_fraction : ndarray
            Cumulative shares of the rows' mass and of the loss at each bin boundary,
            starting at (0, 0); empty when there is no loss.
        """
        mass, loss = self.mass[::-1], self.loss[::-1]
        keep = mass > 0
        total_mass, total_loss = mass.sum(), loss.sum()
        if not (total_mass > 0 and total_loss > 0):
            return np.zeros(0), np.zeros(0)
        rows = np.concatenate([[0.0], np.cumsum(mass[keep]) / total_mass])
        share = np.concatenate([[0.0], np.cumsum(loss[keep]) / total_loss])
        return rows, share

    def to_dict(self):
        """The histogram as a dict of lists."""
        return {"edges": self.edges.tolist(), "mass": self.mass.tolist(),
                "loss": self.loss.tolist()}


@dataclass(frozen=True)
class SliceTable:
    """Metrics per class (``per_class=True``) or per group (``groups=``), one entry per key.

    Every array has one value per key; the metrics mean what ``EvaluationResult``'s do, over
    the rows of that class (label) or group. A class table has only the classes, a group
    table only the groups, that hold at least one counted row.

    Attributes
    ----------
    keys : ndarray of int64
        The class labels or group ids, increasing.
    count : ndarray of int64
    weight_sum : ndarray of float64
    loss, loss_se, perplexity, entropy, brier : ndarray of float64
    confidence : ndarray of float64
        Mean confidence (largest predicted probability).
    accuracy : ndarray of float64, or None
        Top-1 accuracy; for a class, its recall. None for soft targets.
    topk : dict of int to ndarray, or None
    calibration_gap : ndarray of float64, or None
        ``confidence - accuracy``: positive when over-confident.
    precision : ndarray of float64, or None
        Classes only: of the rows predicted as the class, the weighted share whose label it
        is (NaN when none is predicted as it).
    """

    keys: np.ndarray
    count: np.ndarray
    weight_sum: np.ndarray
    loss: np.ndarray
    loss_se: np.ndarray
    perplexity: np.ndarray
    entropy: np.ndarray
    brier: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray | None
    topk: dict | None
    calibration_gap: np.ndarray | None
    precision: np.ndarray | None

    def __len__(self):
        return len(self.keys)

    def to_dict(self):
        """The table as a dict of lists (``topk`` keyed by k)."""
        out = {}
        for name in ("keys", "count", "weight_sum", "loss", "loss_se", "perplexity", "entropy",
                     "brier", "confidence", "accuracy", "calibration_gap", "precision"):
            value = getattr(self, name)
            out[name] = None if value is None else value.tolist()
        out["topk"] = None if self.topk is None else {k: a.tolist() for k, a in self.topk.items()}
        return out


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a classifier over the counted rows (see ``fastxent.evaluate`` and
    ``docs/evaluation.md`` for the exact definitions).

    Attributes
    ----------
    loss : float
        Mean cross-entropy in nats, as ``cross_entropy(..., reduction="mean")``.
    perplexity : float
        ``exp(loss)``: the effective number of classes the model hesitates between.
    accuracy : float or None
        Top-1 accuracy (None for soft targets).
    topk : dict of int to float, or None
        Top-k accuracy for each requested k (None for soft targets).
    entropy : float
        Mean predictive entropy in nats.
    brier : float
        Mean multiclass Brier score ``sum_c (p_c - t_c)**2``.
    ece : float or None
        Expected calibration error over 15 equal-width confidence bins (None for soft
        targets).
    ece_bins : CalibrationBins or None
        The bins behind `ece`.
    count : int
        Number of counted rows (rows whose label is ``ignore_index`` are not counted).
    weight_sum : float
        Summed sample weight of the counted rows (`count` without sample weights).
    n_classes : int or None
        The number of classes C (None before any update).
    loss_bits : float
        `loss` in bits: ``loss / ln 2``.
    loss_se : float
        Standard error of `loss` (delta method for a weighted mean; NaN below 2 rows).
    loss_ci : tuple of float
        95 % interval of `loss`: ``loss ± 1.96 loss_se``.
    accuracy_ci : tuple of float, or None
        Wilson's 95 % interval of `accuracy` (over the effective number of rows with
        sample weights).
    topk_ci : dict of int to tuple, or None
        Wilson's 95 % interval of each top-k accuracy.
    confidence : float
        Mean confidence (largest predicted probability).
    uniform_loss : float
        The loss of predicting 1/C for every class: ``log C`` (with class weights and soft
        targets, the same weighted mean).
    prior_loss : float
        The loss of predicting the class prior for every row: `prior` if given (divided by
        its sum; inf when a class seen has prior 0), else the weighted label (or mean
        soft-target) distribution of the rows seen, whose loss is (without class weights)
        its entropy.
    prior_source : str
        ``"given"`` or ``"seen"``.
    skill : float
        ``1 - loss / prior_loss`` (McFadden's pseudo-R²): 0 for no better than the prior, 1
        for a perfect model, negative for worse than the prior; NaN when `prior_loss` is not
        a positive finite number.
    target_entropy : float or None
        Soft targets: the mean entropy of the targets, the least loss any model can reach
        (without class weights).
    kl : float or None
        Soft targets: ``loss - target_entropy``, the mean KL divergence of the predictions
        from the targets (without class weights).
    concentration : dict of float to float
        The share of the total loss carried by the worst 1 % and 10 % of rows (keys 0.01
        and 0.1; see `loss_histogram`).
    loss_histogram : LossHistogram
        The rows' losses in bins, behind `concentration`.
    per_class : SliceTable or None
        Per class, with ``per_class=True``.
    confusion : ndarray of shape (C, C) or None
        With ``confusion=True``: ``confusion[i, j]`` the summed sample weight of the rows of
        label i predicted as j (counts without sample weights), as scikit-learn's
        ``confusion_matrix``.
    groups : SliceTable or None
        Per group, with ``groups=``.
    """

    loss: float
    perplexity: float
    accuracy: float | None
    topk: dict | None
    entropy: float
    brier: float
    ece: float | None
    ece_bins: CalibrationBins | None
    count: int
    weight_sum: float
    n_classes: int | None
    loss_bits: float
    loss_se: float
    loss_ci: tuple
    accuracy_ci: tuple | None
    topk_ci: dict | None
    confidence: float
    uniform_loss: float
    prior_loss: float
    prior_source: str
    skill: float
    target_entropy: float | None
    kl: float | None
    concentration: dict
    loss_histogram: LossHistogram
    per_class: SliceTable | None
    confusion: np.ndarray | None
    groups: SliceTable | None

    def to_dict(self):
        """Every field as JSON-ready values with the attributes' names (arrays and tables as
        lists and dicts of lists, intervals as lists)."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, (CalibrationBins, LossHistogram, SliceTable)):
                value = value.to_dict()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = {k: list(x) if isinstance(x, tuple) else x for k, x in value.items()}
            out[name] = value
        return out

    def summary(self):
        """The interpretation in one line, as ``fastxent eval`` prints it first."""
        from fastxent._eval.text import interpretation
        return interpretation(self)


def calibration_bins(weight, confidence_sum, correct_sum):
    """The ``CalibrationBins`` of equal-width bins from their sums.

    Parameters
    ----------
    weight, confidence_sum, correct_sum : ndarray of shape (n_bins,)
        Per bin: the summed weight, weight * confidence and weight * correct of its rows.

    Returns
    -------
    CalibrationBins
    """
    n_bins = len(weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(weight != 0, confidence_sum / weight, np.nan)
        accuracy = np.where(weight != 0, correct_sum / weight, np.nan)
    return CalibrationBins(edges=np.arange(n_bins + 1) / n_bins, weight=weight.copy(),
                           confidence=confidence, accuracy=accuracy)


def loss_histogram(mass, loss):
    """The ``LossHistogram`` of the kernel's bins of mass and mass * loss."""
    from fastxent._core.dispatch import kernels
    steps, low = kernels.HIST_STEPS, kernels.HIST_LOW
    inner = np.arange(kernels.HIST_BINS - 1)           # the lower edges of bins 1, 2, ...
    lower = np.ldexp(1.0 + (inner % steps) / steps, low + inner // steps)
    edges = np.concatenate([[0.0], lower, [math.inf]])
    return LossHistogram(edges=edges, mass=mass.copy(), loss=loss.copy())
