"""What an evaluation returns: ``EvaluationResult`` and its ``CalibrationBins``."""

from dataclasses import dataclass

import numpy as np


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
class EvaluationResult:
    """Metrics of a classifier over the counted rows (see ``fastxent.evaluate``).

    Attributes
    ----------
    loss : float
        Mean cross-entropy, as ``cross_entropy(..., reduction="mean")``.
    perplexity : float
        ``exp(loss)``.
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

    def to_dict(self):
        """The metrics as a dict with the attributes' names (``ece_bins`` as a dict)."""
        return {"loss": self.loss, "perplexity": self.perplexity, "accuracy": self.accuracy,
                "topk": None if self.topk is None else dict(self.topk),
                "entropy": self.entropy, "brier": self.brier, "ece": self.ece,
                "ece_bins": None if self.ece_bins is None else self.ece_bins.to_dict(),
                "count": self.count, "weight_sum": self.weight_sum}


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
