"""The statistics an evaluation derives from its sums: standard errors, intervals, tests,
baselines and the loss concentration.

Every function takes sums that add exactly over chunks of rows (so they hold under
``Evaluator.merge``, Dask and checkpoints) and returns floats; NaN where a value is undefined
(too few rows, no weight). The intervals are 95 % normal-approximation intervals (Wilson's for
proportions): evaluation sets are large; see ``docs/evaluation.md``.
"""

import math
from statistics import NormalDist

import numpy as np

#: The two-sided 95 % quantile of the standard normal distribution.
Z95 = NormalDist().inv_cdf(0.975)


def ratio_se(count, numerator, denominator, num_sq, cross, den_sq):
    """The standard error of the ratio ``R = Σa / Σb`` of per-row terms a, b (delta method).

    ``SE = sqrt(n / (n - 1) * Σ(a - R b)²) / |Σb|``: without weights (b = 1) the sample
    standard deviation over sqrt(n), as ``scipy.stats.sem``.

    Parameters
    ----------
    count : float or ndarray
        n, the number of rows.
    numerator, denominator : float or ndarray
        Σa and Σb.
    num_sq, cross, den_sq : float or ndarray
        Σa², Σab and Σb².

    Returns
    -------
    ndarray of float64
        Elementwise; NaN for fewer than two rows or Σb = 0.
    """
    count, numerator, denominator = (np.asarray(x, dtype=np.float64)
                                     for x in (count, numerator, denominator))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = numerator / denominator
        spread = np.maximum(num_sq - 2.0 * r * cross + r * r * den_sq, 0.0)   # Σ(a - R b)²
        se = np.sqrt(count / (count - 1) * spread) / np.abs(denominator)
    return np.where((count >= 2) & (denominator != 0), se, np.nan)


def normal_interval(value, se):
    """The 95 % interval ``value ± 1.96 se``, as a tuple (NaN, NaN) when either is NaN."""
    if not (math.isfinite(value) and math.isfinite(se)):
        return (math.nan, math.nan)
    return (value - Z95 * se, value + Z95 * se)


def effective_count(weight_sum, weight_sq):
    """Kish's effective number of rows ``(Σs)² / Σs²`` (the row count without weights)."""
    return weight_sum * weight_sum / weight_sq if weight_sq > 0 else math.nan


def wilson_interval(p, n):
    """Wilson's 95 % score interval of a proportion p observed over n (effective) rows.

    Without weights this is ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
    """
    if not (math.isfinite(p) and n > 0):
        return (math.nan, math.nan)
    z2 = Z95 * Z95
    scale = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / scale
    half = Z95 / scale * math.sqrt(max(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n))
    return (max(center - half, 0.0), min(center + half, 1.0))


def proportion_se(p, n):
    """The standard error ``sqrt(p (1 - p) / n)`` of a proportion over n (effective) rows."""
    if not (math.isfinite(p) and n > 0):
        return math.nan
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def two_sided_p(z):
    """The two-sided p-value of a standard normal statistic z."""
    return math.erfc(abs(z) / math.sqrt(2.0)) if math.isfinite(z) else math.nan


def baseline_loss(class_mass, class_weight, prior, denominator):
    """The mean loss of predicting the distribution `prior` for every row.

    Parameters
    ----------
    class_mass : ndarray of shape (C,)
        Σ s per label (labels) or Σ s t_c (soft targets) over the counted rows.
    class_weight : ndarray of shape (C,) or None
        The loss's class weights.
    prior : ndarray of shape (C,)
        Non-negative, with a positive sum (divided by it here).
    denominator : float
        The mean loss's denominator: ``Σ s w_y`` with labels (that is ``Σ_c w_c M_c``), ``Σ s``
        with soft targets.

    Returns
    -------
    float
        ``Σ_c w_c M_c (-log π_c) / denominator`` with ``π = prior / Σ prior`` (terms with
        ``M_c = 0`` are 0; inf when a class seen has prior 0); NaN for a zero denominator.
    """
    weighted = class_mass if class_weight is None else class_mass * class_weight
    if denominator == 0:
        return math.nan
    scaled = prior / prior.max()               # a sum of huge finite values stays finite
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(weighted != 0, -weighted * np.log(scaled / scaled.sum()), 0.0)
    return float(terms.sum() / denominator)


def worst_share(mass, loss, fraction):
    """The share of the total loss carried by the worst `fraction` of the rows' mass.

    Parameters
    ----------
    mass, loss : ndarray of shape (n_bins,)
        Per bin of increasing loss: the rows' summed mass and mass * loss.
    fraction : float in (0, 1]

    Returns
    -------
    float
        Bins are taken from the worst down; the bin the fraction ends in contributes its mean
        loss times the mass still needed (its rows' losses differ by less than the bins'
        width, so the share is exact to within that bin's spread). NaN for no loss.
    """
    total_loss = loss.sum()
    total_mass = mass.sum()
    if not (total_loss > 0 and total_mass > 0):
        return math.nan
    needed = fraction * total_mass
    carried = 0.0
    for bin_mass, bin_loss in zip(mass[::-1].tolist(), loss[::-1].tolist(), strict=True):
        if bin_mass <= 0:
            continue
        if bin_mass >= needed:
            carried += bin_loss * (needed / bin_mass)
            break
        carried += bin_loss
        needed -= bin_mass
    return float(carried / total_loss)
