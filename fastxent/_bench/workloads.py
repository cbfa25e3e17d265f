"""What ``fastxent bench`` times: the workload kinds, their sizes and their seeded data.

A :class:`Workload` is one case (a kind, a dtype and a shape); :func:`make_data` generates its
inputs, the same for every implementation. The constants of the ``"evaluate"`` kind (top-k,
calibration bins, metric names) are here too, because every implementation must compute the
same metrics.
"""

import importlib.util
from dataclasses import dataclass

import numpy as np

SOFTMAX_CE = "softmax_ce"
SOFTMAX_CE_LOSS = "softmax_ce_loss"
BINARY_CE = "binary_ce"
BINARY_LOGLOSS = "binary_logloss"
EVALUATE = "evaluate"
SOFTMAX_GRAD_HESS = "softmax_grad_hess"
SOFTMAX_TERMS = "softmax_terms"
XGBOOST_ROUND = "xgboost_round"
LINEAR_CE = "linear_ce"
LINEAR_EVAL = "linear_eval"
EVALUATE_SLICES = "evaluate_slices"
COMPARE = "compare"
KINDS_WITH_GRAD = frozenset({SOFTMAX_CE, BINARY_CE, SOFTMAX_TERMS, LINEAR_CE})
# The fused linear layer + cross-entropy kinds: the shape is (N, d, V), hidden states (N, d),
# an output matrix (V, d) and labels (N,).
LINEAR_KINDS = frozenset({LINEAR_CE, LINEAR_EVAL})
SOFTMAX_KINDS = frozenset({SOFTMAX_CE, SOFTMAX_CE_LOSS, EVALUATE, SOFTMAX_GRAD_HESS,
                           SOFTMAX_TERMS, EVALUATE_SLICES, COMPARE})
# The kinds that explain an evaluation ("evaluate_slices": evaluate with per_class=True and
# SLICE_GROUPS random groups; "compare": two models on the same rows), reported as multiples
# of the plain "evaluate" of the same dtype and shape in the same run.
EXPLAINING_KINDS = (EVALUATE_SLICES, COMPARE)
SLICE_GROUPS = 1000
# The "softmax_terms" workload: cross-entropy with Gemma 2's soft-cap, PaLM's z-loss and a
# focal exponent, loss and gradient (fastxent's keywords; every implementation computes this).
TERMS_OPTIONS = {"softcap": 30.0, "z_loss": 1e-4, "focal_gamma": 2.0}
# The "xgboost_round" workload: rows of XGBOOST_FEATURES features whose label (one of the
# shape's classes) a few of them decide; one round of trees of depth XGBOOST_DEPTH.
XGBOOST_FEATURES = 16
XGBOOST_DEPTH = 6

FULL_SIZES = {
    SOFTMAX_CE: [(200_000, 100), (20_000, 1000), (2048, 32_000), (1_000_000, 10), (64, 10)],
    SOFTMAX_CE_LOSS: [(20_000, 1000)],
    BINARY_CE: [(10_000_000,)],
    BINARY_LOGLOSS: [(10_000_000,)],
    EVALUATE: [(1_000_000, 10), (20_000, 1000)],
    EVALUATE_SLICES: [(1_000_000, 10), (20_000, 1000)],
    COMPARE: [(1_000_000, 10), (20_000, 1000)],
    SOFTMAX_GRAD_HESS: [(1_000_000, 10)],
    SOFTMAX_TERMS: [(20_000, 1000), (1_000_000, 10)],
    XGBOOST_ROUND: [(1_000_000, 10)],
    LINEAR_CE: [(4096, 512, 32_000)],
    LINEAR_EVAL: [(4096, 512, 32_000)],
}
QUICK_SIZES = {
    SOFTMAX_CE: [(2000, 100), (64, 1000), (64, 10)],
    SOFTMAX_CE_LOSS: [(200, 1000)],
    BINARY_CE: [(100_000,)],
    BINARY_LOGLOSS: [(100_000,)],
    EVALUATE: [(2000, 10), (64, 1000)],
    EVALUATE_SLICES: [(2000, 10)],
    COMPARE: [(2000, 10)],
    SOFTMAX_GRAD_HESS: [(2000, 10)],
    SOFTMAX_TERMS: [(200, 1000)],
    XGBOOST_ROUND: [(2000, 10)],
    LINEAR_CE: [(256, 32, 1000)],
    LINEAR_EVAL: [(256, 32, 1000)],
}
DTYPES = ("float32", "float64")
# Keeps probabilities away from 0 and 1 so that no implementation has to clip them.
PROBABILITY_MARGIN = 1e-4
# The "evaluate" workload: top-1 and top-TOP_K accuracy, and the ECE over ECE_BINS equal-width
# bins (bin b holds the confidences in (b/ECE_BINS, (b+1)/ECE_BINS]), as fastxent.evaluate has.
TOP_K = 5
EVALUATE_TOPK = (1, TOP_K)
ECE_BINS = 15
# The metrics every "evaluate" implementation computes, in this order.
EVALUATE_METRIC_NAMES = (
    "loss", "perplexity", "accuracy", f"top{TOP_K}", "entropy", "brier", "ece")


@dataclass(frozen=True)
class Workload:
    """One benchmark case.

    Parameters
    ----------
    kind : str
        ``"softmax_ce"`` (loss and gradient, integer labels), ``"softmax_ce_loss"`` (loss
        only), ``"binary_ce"`` (binary CE with logits, loss and gradient),
        ``"binary_logloss"`` (binary CE on probabilities, loss only), ``"evaluate"``
        (every metric of :func:`fastxent.evaluate` from logits and integer labels, top-1 and
        top-5), ``"softmax_grad_hess"`` (the summed loss's gradient and Hessian diagonal: what
        a gradient-boosting objective computes), ``"softmax_terms"`` (loss and gradient with
        the soft-cap, z-loss and focal exponent of ``TERMS_OPTIONS``) or
        ``"xgboost_round"`` (one XGBoost boosting
        round of a multiclass model: fastxent's objective against the built-in
        ``multi:softprob``; the shape is rows x classes), ``"evaluate_slices"`` (``"evaluate"``
        with ``per_class=True`` and ``SLICE_GROUPS`` random groups), ``"compare"``
        (:func:`fastxent.compare` of two models' logits), ``"linear_ce"`` (a linear layer
        fused with cross-entropy: the loss and the gradients of the hidden states and of the
        weight; the shape is N x d x V) or ``"linear_eval"`` (its loss alone).
    dtype : str
        ``"float32"`` or ``"float64"``.
    shape : tuple of int
        Shape of the input; for softmax kinds the last axis holds the classes.
    """

    kind: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def with_grad(self):
        """bool : Whether the timed call also computes the gradient."""
        return self.kind in KINDS_WITH_GRAD

    @property
    def shape_text(self):
        """str : The shape written as ``2048x32000``."""
        return "x".join(map(str, self.shape))

    @property
    def label(self):
        """str : A unique, human-readable name, used as the pytest-benchmark group."""
        return f"{self.kind}-{self.dtype}-{self.shape_text}"


@dataclass(frozen=True)
class Data:
    """Inputs of one workload: logits or probabilities (hidden states for the linear kinds),
    and labels or 0/1 targets; the linear kinds' (V, d) output matrix."""

    inputs: np.ndarray
    targets: np.ndarray
    linear_weight: np.ndarray | None = None

    def rows(self):
        """View softmax data as 2-D logits and 1-D labels.

        Returns
        -------
        logits : ndarray of shape (n_rows, n_classes)
        labels : ndarray of shape (n_rows,)
        """
        return self.inputs.reshape(-1, self.inputs.shape[-1]), self.targets.reshape(-1)


def default_workloads(*, dtypes=("float32",), softmax_shapes=None, quick=False):
    """List the workloads of a run.

    Parameters
    ----------
    dtypes : sequence of str, default ("float32",)
        Floating dtypes; every workload is run in each.
    softmax_shapes : sequence of tuple of int, optional
        When given, the run is restricted to softmax CE loss and gradient at these shapes.
    quick : bool, default False
        Use tiny sizes (CI smoke runs) instead of the full set.

    Returns
    -------
    list of Workload
    """
    sizes = {SOFTMAX_CE: softmax_shapes} if softmax_shapes else QUICK_SIZES if quick else FULL_SIZES
    return [
        Workload(kind, dtype, tuple(shape))
        for kind, shapes in sizes.items()
        if kind != XGBOOST_ROUND or importlib.util.find_spec("xgboost") is not None
        for dtype in dtypes
        if kind != XGBOOST_ROUND or dtype == "float32"   # XGBoost computes in float32
        for shape in shapes
    ]


def make_data(workload, seed=0):
    """Generate the seeded synthetic data of a workload.

    Parameters
    ----------
    workload : Workload
    seed : int, default 0

    Returns
    -------
    Data
        Softmax kinds: standard-normal logits and int64 labels of shape ``shape[:-1]``.
        Linear kinds: standard-normal hidden states, a weight scaled by ``1/sqrt(d)`` and
        int64 labels.
        ``"xgboost_round"``: float32 features (at least ``XGBOOST_FEATURES`` per row) and
        labels that the first ``n_classes`` features decide, with noise.
        Binary kinds: standard-normal logits, or probabilities kept at least
        ``PROBABILITY_MARGIN`` away from 0 and 1, with 0/1 targets of the input's dtype.
    """
    rng = np.random.default_rng(seed)
    if workload.kind == XGBOOST_ROUND:
        n_rows, n_classes = workload.shape
        features = rng.standard_normal((n_rows, max(XGBOOST_FEATURES, n_classes)),
                                       dtype=np.float32)
        noisy = features[:, :n_classes] + rng.standard_normal((n_rows, n_classes),
                                                              dtype=np.float32)
        return Data(features, np.argmax(noisy, axis=1).astype(np.int64))
    if workload.kind in LINEAR_KINDS:
        n_rows, n_features, n_classes = workload.shape
        hidden = rng.standard_normal((n_rows, n_features), dtype=workload.dtype)
        # Scaled so that the logits are standard normal, as in the other softmax kinds.
        weight = rng.standard_normal((n_classes, n_features), dtype=workload.dtype)
        weight /= np.sqrt(n_features, dtype=workload.dtype)
        labels = rng.integers(0, n_classes, size=n_rows, dtype=np.int64)
        return Data(hidden, labels, weight)
    inputs = rng.standard_normal(workload.shape, dtype=workload.dtype)
    if workload.kind in SOFTMAX_KINDS:
        labels = rng.integers(0, workload.shape[-1], size=workload.shape[:-1], dtype=np.int64)
        return Data(inputs, labels)
    targets = rng.integers(0, 2, size=workload.shape).astype(workload.dtype)
    if workload.kind == BINARY_LOGLOSS:
        inputs = np.clip(_sigmoid(inputs), PROBABILITY_MARGIN, 1 - PROBABILITY_MARGIN)
    return Data(inputs, targets)


def _sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def bytes_moved(workload, data):
    """Count the bytes a workload must at least read and write.

    Parameters
    ----------
    workload : Workload
    data : Data

    Returns
    -------
    int
        The bytes of the inputs and targets, plus those of the gradient when the workload
        computes one (the linear kinds: of the weight too, and of both gradients).
    """
    if workload.kind in LINEAR_KINDS:
        operands = data.inputs.nbytes + data.linear_weight.nbytes
        return operands * (2 if workload.with_grad else 1) + data.targets.nbytes
    grad_bytes = data.inputs.nbytes if workload.with_grad else 0
    if workload.kind == SOFTMAX_GRAD_HESS:
        grad_bytes = 2 * data.inputs.nbytes
    return data.inputs.nbytes + data.targets.nbytes + grad_bytes
