"""Batch evaluation: every metric of a classifier's outputs in one read of the data.

``evaluate`` and ``Evaluator`` validate like ``cross_entropy`` and run one kernel
(``evaluate_rows``) that returns float64 sums; the metrics are ratios of those sums, so chunks
and evaluators merge exactly by adding them. See ``docs/evaluation.md``.
"""

import math
import numbers
import operator
from dataclasses import dataclass

import numpy as np

from fastxent._api import docstrings as docs
from fastxent._api import validation as v
from fastxent._core.dispatch import kernels
from fastxent._api.multiclass import prepare
from fastxent._core.threads import effective_n_threads

N_BINS = 15                      # equal-width confidence bins of the calibration error
STATE_VERSION = 1
_SUMS = kernels.EVAL_STATS       # the named sums, in the kernel's order
# How ``Evaluator.to_dict`` writes the non-finite sums (a NaN row makes them NaN), so that the
# state is strict JSON: the names JavaScript and Python's json module give these values.
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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


# ---------------------------------------------------------------------------------------------
# Options: checked and made plain Python values once, when an Evaluator is made, so that every
# later use (the kernels, merge, to_dict and JSON, checkpoints) sees the same values.


def _plain_scalar(value):
    """`value` as a Python scalar when it is a NumPy scalar or a 0-d array, else unchanged."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def _check_topk(topk):
    """Return `topk` as a sorted tuple of distinct positive ints (at most int64's maximum)."""
    try:
        values = [_plain_scalar(k) for k in topk]
    except TypeError:
        raise TypeError(f"topk must be a sequence of positive ints, got {topk!r}") from None
    if not values:
        raise ValueError("topk must hold at least one k")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"topk must hold ints, got {k!r}")
        if not 1 <= k <= np.iinfo(np.int64).max:
            raise ValueError(f"topk must hold positive ints of at most 2**63 - 1 (a k of at "
                             f"least C gives 1), got {k!r}")
    return tuple(sorted({int(k) for k in values}))


def _check_class_weight(weight):
    """Return a float64 copy of the per-class `weight` (1-D, finite), or None."""
    if weight is None:
        return None
    w = np.array(v.float_like(weight, np.float64, "weight"))
    if w.ndim != 1:
        raise ValueError(f"weight must be 1-D, one weight per class, got shape {w.shape}")
    not_finite = ~np.isfinite(w)
    if not_finite.any():
        index = int(np.argmax(not_finite))
        raise ValueError(f"weight must be finite: weight[{index}] = {w[index]}")
    return w


def _check_ignore_index(ignore_index):
    """Return `ignore_index` as an int in int64's range, or None."""
    has_ignore, value = v.check_ignore_index(_plain_scalar(ignore_index), integral=True)
    return value if has_ignore else None


def _check_eps(eps):
    """Return `eps` as a float in [0, 0.5), or None (the dtype's eps, resolved per chunk)."""
    return None if eps is None else v.resolve_eps(_plain_scalar(eps), np.float64)


def _check_axis(axis):
    """Return `axis` as an int (anything with ``__index__`` but a bool)."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"axis must be an int, got {axis!r}")
    try:
        return operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int, got {axis!r}") from None


def _ratio(numerator, denominator):
    return float(numerator / denominator) if denominator != 0 else math.nan


def _calibration_bins(weight, confidence_sum, correct_sum):
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(weight != 0, confidence_sum / weight, np.nan)
        accuracy = np.where(weight != 0, correct_sum / weight, np.nan)
    return CalibrationBins(edges=np.arange(N_BINS + 1) / N_BINS, weight=weight.copy(),
                           confidence=confidence, accuracy=accuracy)


class Evaluator:
    """Accumulates the metrics of ``fastxent.evaluate`` over chunks of rows.

    The state is a set of float64 sums, so ``merge`` is exact up to float64 rounding and
    ``to_dict``/``from_dict`` save and restore it exactly.

    Parameters
    ----------
    from_logits, topk, weight, ignore_index, eps, axis, validate, n_threads
        As for ``fastxent.evaluate``. They are checked here, before any data is seen (NumPy
        scalars and 0-d arrays are taken as the Python numbers they hold; `weight` and `eps`
        must be finite), so the options of two Evaluators compare, merge and save as plain
        Python values.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> ev = fastxent.Evaluator(topk=(1, 2))
    >>> _ = ev.update(np.array([[2.0, 1.0, 0.0]]), np.array([1]))
    >>> _ = ev.update(np.array([[0.0, 1.0, 3.0]]), np.array([2]))
    >>> result = ev.result()
    >>> result.accuracy, result.topk, result.count
    (0.5, {1: 0.5, 2: 1.0}, 2)
    """

    def __init__(self, *, from_logits=True, topk=(1, 5), weight=None, ignore_index=None,
                 eps=None, axis=-1, validate=True, n_threads=None):
        self.from_logits = v.check_flag(from_logits, "from_logits")
        self.topk = _check_topk(topk)
        self.weight = _check_class_weight(weight)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.eps = _check_eps(eps)
        self.axis = _check_axis(axis)
        self.validate = v.check_flag(validate, "validate")
        effective_n_threads(n_threads)          # checked now; resolved per chunk
        self.n_threads = n_threads
        self.n_classes = None           # fixed by the first update
        self.target_kind = None         # "labels" or "soft", fixed by the first update
        self._kernel_topk = np.array(sorted(set(self.topk) | {1}), dtype=np.int64)
        self._stats = np.zeros(len(_SUMS) + len(self._kernel_topk) + 3 * N_BINS)

    def update(self, input, target, sample_weight=None):
        """Add a chunk of rows.

        Parameters
        ----------
        input : array_like
            Logits or probabilities of the chunk, classes along `axis`.
        target : array_like
            Integer class labels or soft targets of the chunk.
        sample_weight : array_like, optional
            Per-row weights of the chunk.

        Returns
        -------
        Evaluator
            self.
        """
        p = prepare(input, target, self.from_logits, self.weight, sample_weight,
                    self.ignore_index, 0.0, self.eps, "mean", self.axis, self.validate,
                    self.n_threads)
        kind = "labels" if p.labels is not None else "soft"
        self._adopt(p.n_classes, kind)
        class_weight = p.class_weight
        if class_weight is None and kind == "soft":
            class_weight = np.ones(p.n_classes)     # the soft-target loop reads weights
        stats = np.empty_like(self._stats)
        kernels.evaluate_rows(
            p.x.reshape(-1), p.n_classes, p.n_inner, p.labels,
            None if p.soft is None else p.soft.reshape(-1),
            None if class_weight is None else class_weight.astype(p.x.dtype),
            p.sample_weight, p.has_ignore, p.ignore_index, p.from_logits, p.eps,
            self._kernel_topk, N_BINS, stats, p.n_threads)
        self._stats += stats
        return self

    def _adopt(self, n_classes, kind):
        if self.n_classes is not None and n_classes != self.n_classes:
            raise ValueError(f"this Evaluator has seen {self.n_classes} classes; the new rows "
                             f"have {n_classes}")
        if self.target_kind is not None and kind != self.target_kind:
            raise ValueError(f"this Evaluator has seen {self.target_kind} targets; the new "
                             f"rows have {kind} targets")
        self.n_classes = n_classes
        self.target_kind = kind

    def _options(self):
        """The options as plain Python values: what merge compares and to_dict saves."""
        return {"from_logits": self.from_logits, "topk": list(self.topk),
                "weight": None if self.weight is None else self.weight.tolist(),
                "ignore_index": self.ignore_index, "eps": self.eps, "axis": self.axis}

    def merge(self, other):
        """Add the state of another Evaluator with the same options.

        Parameters
        ----------
        other : Evaluator

        Returns
        -------
        Evaluator
            self.
        """
        if not isinstance(other, Evaluator):
            raise TypeError(f"can only merge an Evaluator, got {type(other).__name__}")
        mine, theirs = self._options(), other._options()
        differ = [name for name in mine if mine[name] != theirs[name]]
        if differ:
            raise ValueError("cannot merge Evaluators whose options differ: "
                             + ", ".join(f"{n}={mine[n]!r} vs {theirs[n]!r}" for n in differ))
        if other.n_classes is not None:
            self._adopt(other.n_classes, other.target_kind)
        self._stats += other._stats
        return self

    def _sums(self):
        return dict(zip(_SUMS, self._stats[:len(_SUMS)].tolist()))

    def result(self):
        """The metrics over every row seen so far.

        Returns
        -------
        EvaluationResult
        """
        sums = self._sums()
        total = sums["weight"]
        loss = _ratio(sums["loss"], sums["loss_weight"])
        with np.errstate(over="ignore", invalid="ignore"):
            perplexity = float(np.exp(loss))
        accuracy = topk = ece = bins = None
        if self.target_kind != "soft":
            correct = dict(zip(self._kernel_topk.tolist(),
                               self._stats[len(_SUMS):len(_SUMS) + len(self._kernel_topk)]))
            accuracy = _ratio(correct[1], total)
            topk = {k: _ratio(correct[k], total) for k in self.topk}
            weight, confidence_sum, correct_sum = self._bin_sums()
            ece = _ratio(np.abs(correct_sum - confidence_sum).sum(), total)
            bins = _calibration_bins(weight, confidence_sum, correct_sum)
        return EvaluationResult(
            loss=loss, perplexity=perplexity, accuracy=accuracy, topk=topk,
            entropy=_ratio(sums["entropy"], total), brier=_ratio(sums["brier"], total),
            ece=ece, ece_bins=bins, count=int(sums["count"]), weight_sum=total)

    def _bin_sums(self):
        """Per confidence bin: summed weight, weight * confidence, weight * correct."""
        return self._stats[-3 * N_BINS:].reshape(3, N_BINS)

    def to_dict(self):
        """The state as a dict of strict JSON values; floats round-trip exactly through JSON.

        Non-finite sums (a row holding NaN makes them NaN) are written as the strings
        ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, so ``json.dumps(state,
        allow_nan=False)`` works; ``from_dict`` reads them back.

        Returns
        -------
        dict
        """
        n_correct = len(self._kernel_topk)
        correct = self._stats[len(_SUMS):len(_SUMS) + n_correct]
        weight, confidence, hits = self._bin_sums()
        return {"version": STATE_VERSION, "options": self._options(),
                "n_classes": self.n_classes, "target_kind": self.target_kind,
                "sums": {name: _encode_float(value) for name, value in self._sums().items()},
                "correct": {str(k): _encode_float(c) for k, c in zip(self._kernel_topk.tolist(),
                                                                     correct.tolist())},
                "bins": {"weight": _encode_floats(weight),
                         "confidence_sum": _encode_floats(confidence),
                         "correct_sum": _encode_floats(hits)}}

    @classmethod
    def from_dict(cls, state, n_threads=None):
        """Restore an Evaluator saved by ``to_dict``.

        Every field is checked: its type, the options' values, the number of sums, and that
        the state is consistent (a count that is a whole number, classes that fit the
        weights).

        Parameters
        ----------
        state : dict
            The output of ``to_dict`` (possibly through JSON).
        n_threads : int, optional
            Threads for later updates.

        Returns
        -------
        Evaluator

        Raises
        ------
        ValueError
            `state` is not a state of this version, or a field is missing or invalid.
        """
        if (not isinstance(state, dict) or type(state.get("version")) is not int
                or state["version"] != STATE_VERSION):
            raise ValueError("not an Evaluator state (from Evaluator.to_dict) of version "
                             f"{STATE_VERSION}")
        effective_n_threads(n_threads)          # a bad n_threads is not a bad state
        try:
            ev = cls._restored(state, n_threads)
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"invalid Evaluator state: {reason}") from None
        return ev

    @classmethod
    def _restored(cls, state, n_threads):
        """``from_dict`` without the error wrapping: raises KeyError, TypeError, ValueError."""
        options = _typed(state, "options", dict, "a dict")
        _typed(options, "from_logits", bool, "true or false")
        _typed(options, "topk", list, "a list of ints")
        _typed(options, "weight", (list, type(None)), "a list of numbers or null")
        _typed(options, "ignore_index", (int, type(None)), "an int or null")
        _typed(options, "eps", (int, float, type(None)), "a number or null")
        _typed(options, "axis", int, "an int")
        ev = cls(from_logits=options["from_logits"], topk=options["topk"],
                 weight=options["weight"], ignore_index=options["ignore_index"],
                 eps=options["eps"], axis=options["axis"], n_threads=n_threads)
        n_classes, kind = state["n_classes"], state["target_kind"]
        if (n_classes, kind) != (None, None):
            _typed(state, "n_classes", int, "an int or null")
            if n_classes < 1 or kind not in ("labels", "soft"):
                raise ValueError(f"n_classes {n_classes!r} and target_kind {kind!r} must be "
                                 f"a positive int and 'labels' or 'soft' (or both null)")
            if ev.weight is not None and len(ev.weight) != n_classes:
                raise ValueError(f"weight has {len(ev.weight)} entries for {n_classes} "
                                 f"classes")
        ev.n_classes, ev.target_kind = n_classes, kind
        sums = _float_fields(state, "sums", list(_SUMS))
        correct = _float_fields(state, "correct", [str(k) for k in ev._kernel_topk.tolist()])
        bins = _typed(state, "bins", dict, "a dict")
        if set(bins) != {"weight", "confidence_sum", "correct_sum"}:
            raise ValueError(f"bins must have the keys weight, confidence_sum, correct_sum, "
                             f"got {', '.join(map(str, bins))}")
        per_bin = []
        for name in ("weight", "confidence_sum", "correct_sum"):
            values = _typed(bins, name, list, f"a list of {N_BINS} numbers")
            if len(values) != N_BINS:
                raise ValueError(f"bins.{name} must hold {N_BINS} numbers, got {len(values)}")
            per_bin += [_decode_float(x, f"bins.{name}") for x in values]
        count = sums[list(_SUMS).index("count")]
        if not (math.isfinite(count) and count >= 0 and count.is_integer()):
            raise ValueError(f"sums.count must be a whole number of rows, got {count!r}")
        ev._stats = np.array(sums + correct + per_bin, dtype=np.float64)
        return ev


def _encode_float(x):
    """`x` as a strict JSON value: itself when finite, else its name in ``NON_FINITE``."""
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _encode_floats(values):
    return [_encode_float(x) for x in values.tolist()]


def _decode_float(value, where):
    """A float from ``_encode_float``'s output (a plain NaN or infinity is taken too)."""
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must hold numbers (or \"NaN\", \"Infinity\", "
                         f"\"-Infinity\"), got {value!r}")
    return float(value)


def _typed(mapping, key, types, description):
    """``mapping[key]``, which must be of `types` (bool is not taken as an int)."""
    value = mapping[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise ValueError(f"{key} must be {description}, got {value!r}")
    return value


def _float_fields(state, key, names):
    """The floats of the dict ``state[key]``, which must have exactly the keys `names`."""
    fields = _typed(state, key, dict, "a dict")
    if set(fields) != set(names):
        raise ValueError(f"{key} must have the keys {', '.join(names)}, got "
                         f"{', '.join(map(str, fields))}")
    return [_decode_float(fields[name], f"{key}.{name}") for name in names]


def evaluate(input, target, *, from_logits=True, topk=(1, 5), weight=None, sample_weight=None,
             ignore_index=None, eps=None, axis=-1, validate=True, n_threads=None):
    return Evaluator(from_logits=from_logits, topk=topk, weight=weight,
                     ignore_index=ignore_index, eps=eps, axis=axis, validate=validate,
                     n_threads=n_threads).update(input, target, sample_weight).result()


evaluate.__doc__ = f"""Every evaluation metric of a classifier in one read of the data.

    Parameters
    ----------
    input : array_like
        Logits (``from_logits=True``) or probabilities, classes along `axis`.
    target : array_like
        Integer class labels of any integer dtype, or soft targets shaped like `input`.
    from_logits : bool, default=True
        Whether `input` holds logits or probabilities (clipped to ``[eps, 1 - eps]`` where a
        log is taken).
    topk : sequence of int, default=(1, 5)
        The k of each top-k accuracy. Tied scores rank by class index.
    weight : array_like of shape (C,), optional
        Per-class weights of the loss (only the loss). They must be finite (negative weights
        are used as given, as PyTorch does).
    sample_weight : array_like, optional
        Per-row weights of every metric, shaped like the rows.
    ignore_index : int, optional
        Rows with this label count nowhere.
    eps : float in [0, 0.5), optional
        Probability clipping bound; None means ``np.finfo(dtype).eps``.
    axis : int, default=-1
        The class axis.
    validate : bool, default=True
        Check that probabilities and soft targets lie in [0, 1] (labels are always checked).
{docs.N_THREADS}
    Returns
    -------
    EvaluationResult
        loss, perplexity, accuracy, topk, entropy, brier, ece, ece_bins, count, weight_sum
        (see ``docs/evaluation.md`` for the exact definitions).

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> r = fastxent.evaluate(np.array([[0.4, 0.4, 0.2], [0.1, 0.2, 0.7]]),
    ...                       np.array([1, 2]), from_logits=False, topk=(1, 2))
    >>> round(r.loss, 6), r.accuracy, r.topk
    (0.636483, 0.5, {{1: 0.5, 2: 1.0}})
    """
