"""Comparing two models on the same rows: ``fastxent.compare`` and ``fastxent.Comparator``.

Each chunk of rows goes through the evaluation kernel once per model, with per-row outputs
(loss and prediction); the paired sums of their differences are float64 sums that add over
chunks exactly, like an Evaluator's. See ``docs/evaluation.md``.
"""

import math
from dataclasses import dataclass

import numpy as np

from fastxent._api import docstrings as docs
from fastxent._api import validation as v
from fastxent._api.multiclass import prepare, prepare_like, rows
from fastxent._core.dispatch import kernels
from fastxent._core.threads import effective_n_threads
from fastxent._eval import statistics as st
from fastxent._eval.evaluate import Evaluator, _added, _check_count, _group_ids
from fastxent._eval.jsonvalues import encode_float, float_fields, typed_field
from fastxent._eval.result import EvaluationResult

STATE_VERSION = 1
#: Rows per block of ``Comparator.update``: its per-row outputs (16 bytes a row per model) stay
#: in the cache, and each block's kernel call clears and sums its own tables.
ROW_BLOCK = 2**18
_PAIRED = kernels.PAIRED_SUMS    # the paired sums over the counted rows, in the kernel's order
_PAIRED_COUNT_OF_EVALUATOR = kernels.EVAL_STATS.index("count")   # the same rows' count


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of equal accuracy on paired rows.

    Attributes
    ----------
    only_a_correct, only_b_correct : int
        Rows that model A predicts correctly and B does not, and the reverse (counts of rows:
        sample weights do not enter the test, but rows of sample weight 0 are left out).
    p_value : float
        Two-sided exact binomial p-value of ``only_a_correct`` among the discordant rows,
        under equal accuracy (1.0 without discordant rows).
    """

    only_a_correct: int
    only_b_correct: int
    p_value: float

    def to_dict(self):
        """The fields as a dict."""
        return {"only_a_correct": self.only_a_correct, "only_b_correct": self.only_b_correct,
                "p_value": self.p_value}


@dataclass(frozen=True)
class ComparisonResult:
    """Two models evaluated on the same rows, and whether they differ (``fastxent.compare``).

    Attributes
    ----------
    a, b : EvaluationResult
        Each model's evaluation, as ``fastxent.evaluate`` gives it.
    loss_diff : float
        ``a.loss - b.loss`` (negative: A has the lower loss).
    loss_diff_se : float
        Its standard error, paired on rows (delta method for weighted means).
    loss_diff_ci : tuple of float
        95 % interval: ``loss_diff ± 1.96 loss_diff_se``.
    loss_diff_p : float
        Two-sided p-value of no difference (normal approximation, paired); when every row
        differs by the same amount (a standard error of 0), 1 if that is 0 and 0 otherwise.
    accuracy_diff, accuracy_diff_se : float or None
        ``a.accuracy - b.accuracy`` and its paired standard error (None for soft targets).
    accuracy_diff_ci : tuple of float, or None
    mcnemar : McNemar or None
        McNemar's exact test of equal accuracy (None for soft targets).
    per_class_loss_diff, per_class_accuracy_diff : ndarray or None
        With ``per_class=True``: per class of ``a.per_class.keys``, the differences of the
        mean loss and of the recall.
    count : int
        The rows compared.
    """

    a: EvaluationResult
    b: EvaluationResult
    loss_diff: float
    loss_diff_se: float
    loss_diff_ci: tuple
    loss_diff_p: float
    accuracy_diff: float | None
    accuracy_diff_se: float | None
    accuracy_diff_ci: tuple | None
    mcnemar: McNemar | None
    per_class_loss_diff: np.ndarray | None
    per_class_accuracy_diff: np.ndarray | None
    count: int

    def to_dict(self):
        """Every field as JSON-ready values (``a`` and ``b`` as their ``to_dict()``)."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if hasattr(value, "to_dict"):
                value = value.to_dict()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    def summary(self):
        """The comparison in one line, as ``fastxent compare`` prints it first."""
        from fastxent._eval.text import comparison
        return comparison(self)


class Comparator:
    """Accumulates ``fastxent.compare`` over chunks of rows; merges and saves like an
    Evaluator.

    Parameters
    ----------
    from_logits, topk, weight, ignore_index, eps, axis, validate, n_threads, per_class, prior
        As for ``fastxent.compare`` (checked here).

    Attributes
    ----------
    a, b : Evaluator
        The two models' evaluators.
    options : EvaluationOptions
    n_classes : int or None
    target_kind : {"labels", "soft"} or None
    """

    def __init__(self, *, from_logits=True, topk=(1, 5), weight=None, ignore_index=None,
                 eps=None, axis=-1, validate=True, n_threads=None, per_class=False,
                 prior=None):
        self.a = Evaluator(from_logits=from_logits, topk=topk, weight=weight,
                           ignore_index=ignore_index, eps=eps, axis=axis, validate=validate,
                           n_threads=n_threads, per_class=per_class, prior=prior)
        self.b = Evaluator(**self.a.options.keywords())
        self._paired = np.zeros(len(_PAIRED))

    @property
    def options(self):
        return self.a.options

    @property
    def n_classes(self):
        return self.a.n_classes

    @property
    def target_kind(self):
        return self.a.target_kind

    def update(self, input_a, input_b, target, sample_weight=None, groups=None):
        """Add a chunk of rows: both models' outputs for the same rows and targets.

        Parameters
        ----------
        input_a, input_b : array_like
            The two models' logits (or probabilities), of the same shape.
        target : array_like
            Integer class labels or soft targets of the chunk.
        sample_weight : array_like, optional
        groups : array_like of int, optional
            As for ``Evaluator.update`` (each model's result gets its group table).

        Returns
        -------
        Comparator
            self.
        """
        pa = prepare(input_a, target, self.options, sample_weight=sample_weight)
        xb = v.float_input(input_b, "input_b")
        if xb.shape != pa.shape:
            raise ValueError(f"input_a and input_b must have the same shape, got {pa.shape} "
                             f"and {xb.shape}")
        if pa.soft is None:
            pb = prepare_like(xb, pa)            # the labels are checked once
        else:                                    # soft targets in input_b's own dtype
            pb = prepare(xb, target, self.options, sample_weight=sample_weight)
        group_ids = _group_ids(groups, pa.rows_shape)
        self.a._check_chunk(pa)
        self.b._check_chunk(pb)
        total = None
        for part in _row_blocks(self.a, self.b, pa, pb, group_ids):
            total = part if total is None else [_added(t, x) for t, x in zip(total, part,
                                                                            strict=True)]
        if total is not None:
            sums_a, sums_b, paired = total
            self.a._add(sums_a)
            self.b._add(sums_b)
            self._paired += paired["paired"]
        return self

    def merge(self, other):
        """Add the state of another Comparator with the same options.

        Returns
        -------
        Comparator
            self.
        """
        if not isinstance(other, Comparator):
            raise TypeError(f"can only merge a Comparator, got {type(other).__name__}")
        self.a.merge(other.a)
        self.b.merge(other.b)
        self._paired += other._paired
        return self

    def result(self):
        """The comparison over every row seen so far.

        Returns
        -------
        ComparisonResult
        """
        a, b = self.a.result(), self.b.result()
        p = dict(zip(_PAIRED, self._paired.tolist(), strict=True))
        count, denominator = p["count"], p["loss_weight"]
        loss_diff = p["diff"] / denominator if denominator != 0 else math.nan
        loss_se = float(st.ratio_se(count, p["diff"], denominator, p["diff_sq"],
                                    p["diff_cross"], p["loss_weight_sq"]))
        accuracy_diff = accuracy_se = accuracy_ci = mcnemar = None
        per_class_loss = per_class_accuracy = None
        if self.target_kind != "soft":
            weight = p["weight"]
            accuracy_diff = p["correct_diff"] / weight if weight != 0 else math.nan
            accuracy_se = float(st.ratio_se(count, p["correct_diff"], weight,
                                            p["correct_diff_sq"], p["correct_cross"],
                                            p["weight_sq"]))
            accuracy_ci = st.normal_interval(accuracy_diff, accuracy_se)
            mcnemar = _mcnemar(p["only_a_correct"], p["only_b_correct"])
        if a.per_class is not None:
            per_class_loss = a.per_class.loss - b.per_class.loss
            per_class_accuracy = a.per_class.accuracy - b.per_class.accuracy
        return ComparisonResult(
            a=a, b=b, loss_diff=loss_diff, loss_diff_se=loss_se,
            loss_diff_ci=st.normal_interval(loss_diff, loss_se),
            loss_diff_p=_paired_p(loss_diff, loss_se),
            accuracy_diff=accuracy_diff, accuracy_diff_se=accuracy_se,
            accuracy_diff_ci=accuracy_ci, mcnemar=mcnemar,
            per_class_loss_diff=per_class_loss, per_class_accuracy_diff=per_class_accuracy,
            count=int(count))

    def to_dict(self):
        """The state as a dict of strict JSON values (see ``Evaluator.to_dict``)."""
        return {"version": STATE_VERSION, "kind": "Comparator", "a": self.a.to_dict(),
                "b": self.b.to_dict(),
                "paired": {name: encode_float(x)
                           for name, x in zip(_PAIRED, self._paired.tolist(), strict=True)}}

    @classmethod
    def from_dict(cls, state, n_threads=None):
        """Restore a Comparator saved by ``to_dict``; every field is checked.

        Raises
        ------
        ValueError
            `state` is not a Comparator state of this version, or a field is invalid.
        """
        if (not isinstance(state, dict) or state.get("kind") != "Comparator"
                or type(state.get("version")) is not int or state["version"] != STATE_VERSION):
            raise ValueError(f"not a Comparator state (from Comparator.to_dict) of version "
                             f"{STATE_VERSION}")
        effective_n_threads(n_threads)
        a = Evaluator.from_dict(state.get("a"), n_threads=n_threads)
        b = Evaluator.from_dict(state.get("b"), n_threads=n_threads)
        if a.options != b.options or (a.n_classes, a.target_kind) != (b.n_classes,
                                                                       b.target_kind):
            raise ValueError("invalid Comparator state: its two evaluators differ in options, "
                             "classes or kind of target")
        try:
            typed_field(state, "paired", dict, "a dict")
            paired = dict(zip(_PAIRED, float_fields(state, "paired", list(_PAIRED)),
                              strict=True))
            count = a._stats[_PAIRED_COUNT_OF_EVALUATOR]
            if paired["count"] != count or b._stats[_PAIRED_COUNT_OF_EVALUATOR] != count:
                raise ValueError(f"paired.count {paired['count']!r} is not the evaluators' "
                                 f"count of rows {count!r}")
            for name in ("only_a_correct", "only_b_correct"):
                _check_count(paired[name], f"paired.{name}", count)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"invalid Comparator state: {exc}") from None
        ev = cls.__new__(cls)
        ev.a, ev.b = a, b
        ev._paired = np.array(list(paired.values()))
        return ev


def _row_blocks(evaluator_a, evaluator_b, pa, pb, group_ids):
    """Yield ``(sums_a, sums_b, {"paired": paired})`` of each block of ``ROW_BLOCK`` rows of
    the two prepared problems (one block when the class axis is not last), the sums of
    ``Evaluator._row_sums`` of each model and the paired sums: each block's per-row outputs
    go to the same two small buffers, which stay in cache (not N-sized arrays, whose first
    writes would cost more than the pass)."""
    n_rows = math.prod(pa.rows_shape)
    step = ROW_BLOCK if pa.n_inner == 1 else max(n_rows, 1)
    buffers = [(np.empty(min(step, n_rows)), np.empty(min(step, n_rows), dtype=np.int64))
               for _ in range(2)]
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        if step < n_rows:
            parts = [(rows(p, start, stop, p.n_threads),
                      p.x.reshape(-1, p.n_classes)[start:stop]) for p in (pa, pb)]
            ids = None if group_ids is None else group_ids.rows(start, stop)
        else:
            parts, ids = [(pa, pa.x), (pb, pb.x)], group_ids
        sums = [evaluator._row_sums(p, x, ids, row_outputs=True,
                                    row_buffers=tuple(b[:stop - start] for b in buffer))
                for evaluator, (p, x), buffer in zip((evaluator_a, evaluator_b), parts,
                                                     buffers, strict=True)]
        paired = _paired_sums(parts[0][0], *sums)
        for block in sums:
            del block["row_loss"], block["row_prediction"]
        yield sums[0], sums[1], {"paired": paired}


def _paired_sums(p, sums_a, sums_b):
    """The paired sums (``_PAIRED``) of a chunk from the two models' per-row outputs."""
    out = np.empty(len(_PAIRED))
    class_weight = p.class_weight       # as the kernel used it: in the input's dtype
    if class_weight is not None:
        class_weight = class_weight.astype(p.dtype).astype(np.float64)
    kernels.paired_sums(sums_a["row_loss"], sums_b["row_loss"], sums_a["row_prediction"],
                        sums_b["row_prediction"], p.labels, class_weight, p.sample_weight,
                        p.has_ignore, p.ignore_index, out, p.n_threads)
    return out


def _paired_p(diff, se):
    """The two-sided p-value of a paired difference: from ``diff / se``; without spread (every
    row differs by the same amount) 1 for no difference and 0 for any other."""
    if se > 0:
        return st.two_sided_p(diff / se)
    if se == 0 and math.isfinite(diff):
        return 1.0 if diff == 0 else 0.0
    return math.nan


def _mcnemar(only_a, only_b):
    """McNemar's exact test from the discordant counts."""
    n = only_a + only_b
    if n == 0:
        p_value = 1.0
    else:
        from scipy.stats import binom
        p_value = min(1.0, 2.0 * float(binom.cdf(min(only_a, only_b), n, 0.5)))
    return McNemar(only_a_correct=int(only_a), only_b_correct=int(only_b), p_value=p_value)


@docs.doc(f"""Compare two models on the same rows: each model's evaluation, and whether their
    difference is real (paired on rows).

    Parameters
    ----------
    input_a, input_b : array_like
        The two models' logits (or probabilities with ``from_logits=False``) for the same
        rows, of the same shape.
    target : array_like
        Integer class labels or soft targets, as for ``fastxent.evaluate``.
    from_logits, topk, weight, sample_weight, groups, per_class, prior, ignore_index, eps, \\
axis, validate
        As for ``fastxent.evaluate``.
{docs.N_THREADS}
    Returns
    -------
    ComparisonResult
        ``a`` and ``b`` (each model's ``EvaluationResult``), the paired difference of the
        mean loss with its standard error, 95 % interval and p-value, the accuracy difference
        and McNemar's exact test, and with ``per_class=True`` the per-class differences.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> target = np.array([0, 1, 1, 0])
    >>> a = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
    >>> b = np.zeros((4, 2))
    >>> r = fastxent.compare(a, b, target)
    >>> round(r.loss_diff, 4), r.accuracy_diff, r.mcnemar.only_a_correct
    (-0.4731, 0.5, 2)
    """)
def compare(input_a, input_b, target, *, from_logits=True, topk=(1, 5), weight=None,
            sample_weight=None, groups=None, per_class=False, prior=None, ignore_index=None,
            eps=None, axis=-1, validate=True, n_threads=None):
    return Comparator(from_logits=from_logits, topk=topk, weight=weight,
                      ignore_index=ignore_index, eps=eps, axis=axis, validate=validate,
                      n_threads=n_threads, per_class=per_class, prior=prior).update(
        input_a, input_b, target, sample_weight, groups).result()
