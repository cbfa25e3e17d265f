"""Batch evaluation: every metric of a classifier's outputs in one read of the data.

``evaluate`` and ``Evaluator`` validate like ``cross_entropy`` and run one kernel
(``evaluate_rows``) that returns float64 sums; the metrics are ratios of those sums, so chunks
and evaluators merge exactly by adding them. See ``docs/evaluation.md``.
"""

import math

import numpy as np

from fastxent._api import docstrings as docs
from fastxent._api import linear
from fastxent._api import validation as v
from fastxent._api.multiclass import prepare
from fastxent._api.options import EvaluationOptions
from fastxent._core.dispatch import kernels
from fastxent._core.threads import effective_n_threads
from fastxent._eval.jsonvalues import (
    decode_float,
    encode_float,
    encode_floats,
    float_fields,
    typed_field,
)
from fastxent._eval.result import EvaluationResult, calibration_bins

N_BINS = 15                      # equal-width confidence bins of the calibration error
STATE_VERSION = 1
_SUMS = kernels.EVAL_STATS       # the named sums, in the kernel's order


def _ratio(numerator, denominator):
    return float(numerator / denominator) if denominator != 0 else math.nan


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

    Attributes
    ----------
    options : EvaluationOptions
        The checked options (frozen).
    from_logits : bool
    topk : tuple of int
        The distinct ks, sorted.
    n_classes : int or None
        The classes of the rows seen (None before the first update).
    target_kind : {"labels", "soft"} or None
        The kind of targets seen (None before the first update).

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
        self.options = EvaluationOptions(
            from_logits=from_logits, topk=topk, weight=weight, ignore_index=ignore_index,
            eps=eps, axis=axis, validate=validate, n_threads=n_threads)
        self.from_logits = self.options.from_logits      # public, as the stubs declare
        self.topk = self.options.topk
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
        p = prepare(input, target, self.options, sample_weight=sample_weight)
        self._adopt(p.n_classes, "labels" if p.labels is not None else "soft")
        self._stats += self._row_sums(p, p.x)
        return self

    def update_linear(self, input, linear_weight, target, *, linear_bias=None,
                      sample_weight=None, chunk_rows=None):
        """Add a chunk of rows given as a linear layer's inputs: the logits ``input @
        linear_weight.T + linear_bias`` are computed in chunks of rows, never all at once.

        Needs ``from_logits=True`` and the class axis last (the defaults).

        Parameters
        ----------
        input : array_like of shape (N, d) or (d,)
            Hidden states, float32 or float64 (other real dtypes are read as float64).
        linear_weight : array_like of shape (V, d)
            The output layer's weight, float32 or float64: `input`'s computation dtype.
        target : array_like
            Integer class labels (N,) or soft targets (N, V).
        linear_bias : array_like of shape (V,), optional
        sample_weight : array_like of shape (N,), optional
        chunk_rows : int >= 1, optional
            Rows per chunk of logits (see ``fastxent.linear_cross_entropy``).

        Returns
        -------
        Evaluator
            self.
        """
        needs = ("update_linear computes logits: it needs from_logits=True and the class axis "
                 "last (axis=-1)")
        if not self.options.from_logits:
            raise ValueError(needs)
        lp = linear.prepare(input, linear_weight, target, linear_bias, self.options,
                            sample_weight=sample_weight, chunk_rows=chunk_rows)
        p = lp.problem
        if v.check_axis(self.options.axis, p.shape) != len(p.shape) - 1:
            raise ValueError(needs)
        self._adopt(p.n_classes, "labels" if p.labels is not None else "soft")
        stats = np.zeros_like(self._stats)
        for _, _, rows, logits in lp.each_chunk(lp.chunk_buffer()):
            stats += self._row_sums(rows, logits)
        self._stats += stats
        return self

    def _row_sums(self, p, x):
        """The evaluation kernel's sums over `x`, the rows of the prepared problem `p`."""
        class_weight = p.class_weight
        if class_weight is None and p.soft is not None:
            class_weight = np.ones(p.n_classes)     # the soft-target loop reads weights
        stats = np.empty_like(self._stats)
        kernels.evaluate_rows(
            x.reshape(-1), p.n_classes, p.n_inner, p.labels,
            None if p.soft is None else p.soft.reshape(-1),
            None if class_weight is None else class_weight.astype(p.dtype),
            p.sample_weight, p.has_ignore, p.ignore_index, self.options.from_logits, p.eps,
            self._kernel_topk, N_BINS, stats, p.n_threads)
        return stats

    def _adopt(self, n_classes, kind):
        if self.n_classes is not None and n_classes != self.n_classes:
            raise ValueError(f"this Evaluator has seen {self.n_classes} classes; the new rows "
                             f"have {n_classes}")
        if self.target_kind is not None and kind != self.target_kind:
            raise ValueError(f"this Evaluator has seen {self.target_kind} targets; the new "
                             f"rows have {kind} targets")
        self.n_classes = n_classes
        self.target_kind = kind

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
        differ = self.options.differences(other.options)
        if differ:
            raise ValueError("cannot merge Evaluators whose options differ: "
                             + ", ".join(f"{name}={mine!r} vs {theirs!r}"
                                         for name, mine, theirs in differ))
        if other.n_classes is not None:
            self._adopt(other.n_classes, other.target_kind)
        self._stats += other._stats
        return self

    def _sums(self):
        return dict(zip(_SUMS, self._stats[:len(_SUMS)].tolist(), strict=True))

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
                               self._stats[len(_SUMS):len(_SUMS) + len(self._kernel_topk)],
                               strict=True))
            accuracy = _ratio(correct[1], total)
            topk = {k: _ratio(correct[k], total) for k in self.topk}
            weight, confidence_sum, correct_sum = self._bin_sums()
            ece = _ratio(np.abs(correct_sum - confidence_sum).sum(), total)
            bins = calibration_bins(weight, confidence_sum, correct_sum)
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
        return {"version": STATE_VERSION, "options": self.options.to_dict(),
                "n_classes": self.n_classes, "target_kind": self.target_kind,
                "sums": {name: encode_float(value) for name, value in self._sums().items()},
                "correct": {str(k): encode_float(c)
                            for k, c in zip(self._kernel_topk.tolist(), correct.tolist(),
                                            strict=True)},
                "bins": {"weight": encode_floats(weight),
                         "confidence_sum": encode_floats(confidence),
                         "correct_sum": encode_floats(hits)}}

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
        options = typed_field(state, "options", dict, "a dict")
        typed_field(options, "from_logits", bool, "true or false")
        typed_field(options, "topk", list, "a list of ints")
        typed_field(options, "weight", (list, type(None)), "a list of numbers or null")
        typed_field(options, "ignore_index", (int, type(None)), "an int or null")
        typed_field(options, "eps", (int, float, type(None)), "a number or null")
        typed_field(options, "axis", int, "an int")
        ev = cls(from_logits=options["from_logits"], topk=options["topk"],
                 weight=options["weight"], ignore_index=options["ignore_index"],
                 eps=options["eps"], axis=options["axis"], n_threads=n_threads)
        n_classes, kind = state["n_classes"], state["target_kind"]
        if (n_classes, kind) != (None, None):
            typed_field(state, "n_classes", int, "an int or null")
            if n_classes < 1 or kind not in ("labels", "soft"):
                raise ValueError(f"n_classes {n_classes!r} and target_kind {kind!r} must be "
                                 f"a positive int and 'labels' or 'soft' (or both null)")
            weight = ev.options.weight
            if weight is not None and len(weight) != n_classes:
                raise ValueError(f"weight has {len(weight)} entries for {n_classes} classes")
        ev.n_classes, ev.target_kind = n_classes, kind
        sums = float_fields(state, "sums", list(_SUMS))
        correct = float_fields(state, "correct", [str(k) for k in ev._kernel_topk.tolist()])
        bins = typed_field(state, "bins", dict, "a dict")
        if set(bins) != {"weight", "confidence_sum", "correct_sum"}:
            raise ValueError(f"bins must have the keys weight, confidence_sum, correct_sum, "
                             f"got {', '.join(map(str, bins))}")
        per_bin = []
        for name in ("weight", "confidence_sum", "correct_sum"):
            values = typed_field(bins, name, list, f"a list of {N_BINS} numbers")
            if len(values) != N_BINS:
                raise ValueError(f"bins.{name} must hold {N_BINS} numbers, got {len(values)}")
            per_bin += [decode_float(x, f"bins.{name}") for x in values]
        count = sums[list(_SUMS).index("count")]
        if not (math.isfinite(count) and count >= 0 and count.is_integer()):
            raise ValueError(f"sums.count must be a whole number of rows, got {count!r}")
        ev._stats = np.array(sums + correct + per_bin, dtype=np.float64)
        return ev


@docs.doc(f"""Every evaluation metric of a classifier in one read of the data.

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
    """)
def evaluate(input, target, *, from_logits=True, topk=(1, 5), weight=None, sample_weight=None,
             ignore_index=None, eps=None, axis=-1, validate=True, n_threads=None):
    return Evaluator(from_logits=from_logits, topk=topk, weight=weight,
                     ignore_index=ignore_index, eps=eps, axis=axis, validate=validate,
                     n_threads=n_threads).update(input, target, sample_weight).result()


@docs.doc(f"""Every metric of ``evaluate`` from a linear layer's inputs (hidden states), without
    the N x V logits: how a language model's perplexity is computed from its last hidden
    states.

    Equal, to rounding, to ``evaluate(input @ linear_weight.T + linear_bias, target, ...)``;
    the logits are computed in chunks of `chunk_rows` rows.
{linear.LINEAR_DOC}
    topk, weight, sample_weight, ignore_index
        As for ``evaluate``.{linear.CHUNK_DOC}

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> hidden = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> r = fastxent.evaluate_linear(hidden, weight, np.array([0, 1]), topk=(1,))
    >>> round(r.perplexity, 4), r.accuracy
    (1.4851, 1.0)
    """)
def evaluate_linear(input, linear_weight, target, *, linear_bias=None, topk=(1, 5), weight=None,
                    sample_weight=None, ignore_index=None, chunk_rows=None, n_threads=None):
    return Evaluator(topk=topk, weight=weight, ignore_index=ignore_index,
                     n_threads=n_threads).update_linear(
        input, linear_weight, target, linear_bias=linear_bias, sample_weight=sample_weight,
        chunk_rows=chunk_rows).result()
