"""Batch evaluation: every metric of a classifier's outputs in one read of the data.

``evaluate`` and ``Evaluator`` validate like ``cross_entropy`` and run one kernel
(``evaluate_rows``) that returns float64 sums (for the whole, the loss histogram, the class
prior and the per-class and per-group tables); the metrics are ratios of those sums
(``summary.build_result``), so chunks and evaluators merge exactly by adding them. See
``docs/evaluation.md``.
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
from fastxent._eval.jsonvalues import decode_float, encode_floats, float_fields, typed_field
from fastxent._eval.summary import build_result

N_BINS = 15                      # equal-width confidence bins of the calibration error
STATE_VERSION = 2
_SUMS = kernels.EVAL_STATS       # the named sums of a slice, in the kernel's order
_SLOT = {name: index for index, name in enumerate(_SUMS)}
#: The largest group id ``groups=`` takes (group tables are indexed by id).
MAX_GROUP_ID = 2**24 - 1
#: The most classes a confusion matrix is kept for.
MAX_CONFUSION_CLASSES = 4096


class Evaluator:
    """Accumulates the metrics of ``fastxent.evaluate`` over chunks of rows.

    The state is a set of float64 sums (for the whole, the loss histogram, the class prior
    seen and the per-class and per-group tables), so ``merge`` is exact up to float64
    rounding and ``to_dict``/``from_dict`` save and restore it exactly.

    Parameters
    ----------
    from_logits, topk, weight, ignore_index, eps, axis, validate, n_threads, per_class, \
confusion, prior
        As for ``fastxent.evaluate``. They are checked here, before any data is seen (NumPy
        scalars and 0-d arrays are taken as the Python numbers they hold; `weight`, `prior`
        and `eps` must be finite), so the options of two Evaluators compare, merge and save
        as plain Python values.

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
                 eps=None, axis=-1, validate=True, n_threads=None, per_class=False,
                 confusion=False, prior=None):
        self.options = EvaluationOptions(
            from_logits=from_logits, topk=topk, weight=weight, ignore_index=ignore_index,
            eps=eps, axis=axis, validate=validate, n_threads=n_threads, per_class=per_class,
            confusion=confusion, prior=prior)
        self.from_logits = self.options.from_logits      # public, as the stubs declare
        self.topk = self.options.topk
        self.n_classes = None           # fixed by the first update
        self.target_kind = None         # "labels" or "soft", fixed by the first update
        self._kernel_topk = np.array(sorted(set(self.topk) | {1}), dtype=np.int64)
        self._n_slots = len(_SUMS) + len(self._kernel_topk)
        self._stats = np.zeros(self._n_slots + 3 * N_BINS)
        self._histogram = np.zeros(2 * kernels.HIST_BINS + 1)
        self._class_mass = None         # (C,) from the first update
        self._class_table = None        # (C, slots) with per_class
        self._confusion = None          # (C, C) with confusion
        self._group_table = np.zeros((0, self._n_slots))   # grows to the largest id seen

    def update(self, input, target, sample_weight=None, groups=None):
        """Add a chunk of rows.

        Parameters
        ----------
        input : array_like
            Logits or probabilities of the chunk, classes along `axis`.
        target : array_like
            Integer class labels or soft targets of the chunk.
        sample_weight : array_like, optional
            Per-row weights of the chunk.
        groups : array_like of int, optional
            The group id of each row of the chunk, shaped like the rows: non-negative ints
            up to ``MAX_GROUP_ID`` (2**24 - 1).

        Returns
        -------
        Evaluator
            self.
        """
        p = prepare(input, target, self.options, sample_weight=sample_weight)
        group_ids = _group_ids(groups, p.rows_shape)
        self._check_chunk(p)
        self._add(self._row_sums(p, p.x, group_ids))
        return self

    def update_linear(self, input, linear_weight, target, *, linear_bias=None,
                      sample_weight=None, groups=None, chunk_rows=None):
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
        groups : array_like of int, optional
            As for ``update``.
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
        group_ids = _group_ids(groups, p.rows_shape)
        self._check_chunk(p)
        total = None
        for start, stop, rows, logits in lp.each_chunk(lp.chunk_buffer()):
            part = self._row_sums(rows, logits,
                                  None if group_ids is None else group_ids.rows(start, stop))
            total = part if total is None else _added(total, part)
        if total is not None:
            self._add(total)
        elif self._class_mass is None:
            self._adopt_classes(p.n_classes)
        return self

    def _check_chunk(self, p):
        """Adopt the chunk's classes and kind of target, or raise before anything is added."""
        kind = "labels" if p.labels is not None else "soft"
        if self.n_classes is not None and p.n_classes != self.n_classes:
            raise ValueError(f"this Evaluator has seen {self.n_classes} classes; the new rows "
                             f"have {p.n_classes}")
        if self.target_kind is not None and kind != self.target_kind:
            raise ValueError(f"this Evaluator has seen {self.target_kind} targets; the new "
                             f"rows have {kind} targets")
        if kind == "soft" and (self.options.per_class or self.options.confusion):
            raise ValueError("per_class and confusion need integer class labels, not soft "
                             "targets")
        if self.options.confusion and p.n_classes > MAX_CONFUSION_CLASSES:
            raise ValueError(f"confusion=True keeps a C x C matrix: at most "
                             f"{MAX_CONFUSION_CLASSES} classes, got {p.n_classes}")
        prior = self.options.prior
        if prior is not None and prior.shape != (p.n_classes,):
            raise ValueError(f"prior must have shape ({p.n_classes},) for {p.n_classes} "
                             f"classes, got {prior.shape}")
        self.target_kind = kind
        self._adopt_classes(p.n_classes)

    def _adopt_classes(self, n_classes):
        if self._class_mass is not None:
            return
        self.n_classes = n_classes
        self._class_mass = np.zeros(n_classes)
        if self.options.per_class:
            self._class_table = np.zeros((n_classes, self._n_slots))
        if self.options.confusion:
            self._confusion = np.zeros((n_classes, n_classes))

    def _row_sums(self, p, x, group_ids, row_outputs=False, row_buffers=None):
        """The evaluation kernel's sums over `x`, the rows of the prepared problem `p`.

        Returns
        -------
        dict
            ``stats``, ``histogram``, ``class_mass``, ``class_table`` and ``group_table``
            (None when not kept), ``confusion`` (None unless kept), and with `row_outputs`
            ``row_loss`` and ``row_prediction`` (written into `row_buffers`, a pair of arrays
            of the rows' length, when given).
        """
        class_weight = p.class_weight
        if class_weight is None and p.soft is not None:
            class_weight = np.ones(p.n_classes)     # the soft-target loop reads weights
        n_rows = math.prod(p.rows_shape)
        n_groups = 0 if group_ids is None else group_ids.n_groups
        sums = {
            "stats": np.empty_like(self._stats),
            "histogram": np.empty_like(self._histogram),
            "class_mass": np.empty(p.n_classes),
            "class_table": (np.empty((p.n_classes, self._n_slots))
                            if self.options.per_class else None),
            "group_table": (np.empty((n_groups, self._n_slots))
                            if group_ids is not None else None),
        }
        row_loss = row_prediction = None
        if row_buffers is not None:
            row_loss, row_prediction = row_buffers
        elif row_outputs or self.options.confusion:
            row_loss, row_prediction = np.empty(n_rows), np.empty(n_rows, dtype=np.int64)
        kernels.evaluate_rows(
            x.reshape(-1), p.n_classes, p.n_inner, p.labels,
            None if p.soft is None else p.soft.reshape(-1),
            None if class_weight is None else class_weight.astype(p.dtype),
            p.sample_weight, p.has_ignore, p.ignore_index, self.options.from_logits, p.eps,
            self._kernel_topk, N_BINS, None if group_ids is None else group_ids.ids, n_groups,
            self.options.per_class,
            sums["stats"], sums["histogram"], sums["class_mass"],
            _flat(sums["class_table"]), _flat(sums["group_table"]), row_loss, row_prediction,
            p.n_threads)
        sums["confusion"] = (_confusion(p.labels, row_prediction, p.sample_weight, p.n_classes)
                             if self.options.confusion else None)
        if row_outputs:
            sums["row_loss"], sums["row_prediction"] = row_loss, row_prediction
        return sums

    def _add(self, sums):
        """Add the sums of `_row_sums` to the state."""
        self._stats += sums["stats"]
        self._histogram += sums["histogram"]
        self._class_mass += sums["class_mass"]
        if self._class_table is not None:
            self._class_table += sums["class_table"]
        if self._confusion is not None:
            self._confusion += sums["confusion"]
        if sums["group_table"] is not None:
            self._add_groups(sums["group_table"])

    def _add_groups(self, table):
        if len(table) > len(self._group_table):
            grown = np.zeros((len(table), self._n_slots))
            grown[:len(self._group_table)] = self._group_table
            self._group_table = grown
        self._group_table[:len(table)] += table

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
            if self.n_classes is not None and other.n_classes != self.n_classes:
                raise ValueError(f"this Evaluator has seen {self.n_classes} classes; the "
                                 f"other has seen {other.n_classes}")
            if self.target_kind is not None and other.target_kind != self.target_kind:
                raise ValueError(f"this Evaluator has seen {self.target_kind} targets; the "
                                 f"other has seen {other.target_kind} targets")
            self.target_kind = other.target_kind
            self._adopt_classes(other.n_classes)
            self._add({"stats": other._stats, "histogram": other._histogram,
                       "class_mass": other._class_mass, "class_table": other._class_table,
                       "confusion": other._confusion, "group_table": other._group_table})
        return self

    def result(self):
        """The metrics over every row seen so far.

        Returns
        -------
        EvaluationResult
        """
        return build_result(self)

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
        weight, confidence, hits = self._bin_sums()
        tables = {"histogram": self._histogram, "class_mass": self._class_mass,
                  "class_table": self._class_table, "confusion": self._confusion,
                  "group_table": self._group_table}
        return {"version": STATE_VERSION, "options": self.options.to_dict(),
                "n_classes": self.n_classes, "target_kind": self.target_kind,
                "sums": dict(zip(self._slice_names(),
                                 encode_floats(self._stats[:self._n_slots]), strict=True)),
                "bins": {"weight": encode_floats(weight),
                         "confidence_sum": encode_floats(confidence),
                         "correct_sum": encode_floats(hits)},
                "n_groups": len(self._group_table),
                "tables": {name: None if table is None else encode_floats(table.reshape(-1))
                           for name, table in tables.items()}}

    def _slice_names(self):
        """The names of a slice's sums: EVAL_STATS, then ``correct@k`` for each kernel k."""
        return list(_SUMS) + [f"correct@{k}" for k in self._kernel_topk.tolist()]

    @classmethod
    def from_dict(cls, state, n_threads=None):
        """Restore an Evaluator saved by ``to_dict``.

        Every field is checked: its type, the options' values, the number of sums and of
        table entries, and that the state is consistent (a count that is a whole number,
        classes that fit the weights and the prior).

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
                             f"{STATE_VERSION} (states of earlier fastxent versions lack the "
                             f"sums of the intervals and tables: evaluate again)")
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
        typed_field(options, "per_class", bool, "true or false")
        typed_field(options, "confusion", bool, "true or false")
        typed_field(options, "prior", (list, type(None)), "a list of numbers or null")
        ev = cls(from_logits=options["from_logits"], topk=options["topk"],
                 weight=options["weight"], ignore_index=options["ignore_index"],
                 eps=options["eps"], axis=options["axis"], n_threads=n_threads,
                 per_class=options["per_class"], confusion=options["confusion"],
                 prior=options["prior"])
        n_classes, kind = state["n_classes"], state["target_kind"]
        if (n_classes, kind) != (None, None):
            typed_field(state, "n_classes", int, "an int or null")
            if n_classes < 1 or kind not in ("labels", "soft"):
                raise ValueError(f"n_classes {n_classes!r} and target_kind {kind!r} must be "
                                 f"a positive int and 'labels' or 'soft' (or both null)")
            for name in ("weight", "prior"):
                value = getattr(ev.options, name)
                if value is not None and len(value) != n_classes:
                    raise ValueError(f"{name} has {len(value)} entries for {n_classes} "
                                     f"classes")
            ev.target_kind = kind
            ev._adopt_classes(n_classes)
        sums = float_fields(state, "sums", ev._slice_names())
        bins = typed_field(state, "bins", dict, "a dict")
        if set(bins) != {"weight", "confidence_sum", "correct_sum"}:
            raise ValueError(f"bins must have the keys weight, confidence_sum, correct_sum, "
                             f"got {', '.join(map(str, bins))}")
        per_bin = []
        for name in ("weight", "confidence_sum", "correct_sum"):
            per_bin += _float_list(bins, name, N_BINS, "bins.")
        count = sums[_SLOT["count"]]
        _check_count(count, "sums.count", MAX_COUNT)
        ev._stats = np.array(sums + per_bin, dtype=np.float64)
        n_groups = typed_field(state, "n_groups", int, "an int")
        if not 0 <= n_groups <= MAX_GROUP_ID + 1:
            raise ValueError(f"n_groups must be in [0, {MAX_GROUP_ID + 1}], got {n_groups}")
        tables = typed_field(state, "tables", dict, "a dict")
        ev._histogram = np.array(_float_list(tables, "histogram", len(ev._histogram), "tables."))
        ev._group_table = np.array(
            _float_list(tables, "group_table", n_groups * ev._n_slots, "tables.")
        ).reshape(n_groups, ev._n_slots)
        for name, shape in (("class_mass", (n_classes,)),
                            ("class_table", (n_classes, ev._n_slots)),
                            ("confusion", (n_classes, n_classes))):
            kept = getattr(ev, "_" + name)
            if kept is None:
                if tables.get(name) is not None:
                    raise ValueError(f"tables.{name} must be null for these options")
                continue
            setattr(ev, "_" + name, np.array(
                _float_list(tables, name, math.prod(shape), "tables.")).reshape(shape))
        for name in ("class_table", "group_table"):
            table = getattr(ev, "_" + name)
            if table is not None:
                for key, rows in enumerate(table[:, _SLOT["count"]].tolist()):
                    _check_count(rows, f"tables.{name}: the count of row {key}", count)
        return ev


#: The largest count of rows a state holds (float64 counts are exact up to 2**53).
MAX_COUNT = 2.0**53


def _check_count(value, what, most):
    """Raise ValueError unless `value` is a whole number of rows in [0, `most`]."""
    if not (math.isfinite(value) and 0 <= value <= most and value.is_integer()):
        raise ValueError(f"{what} must be a whole number of rows in [0, {most:.0f}], got "
                         f"{value!r}")


def _float_list(mapping, name, length, prefix):
    """The `length` floats of the list ``mapping[name]`` (strict JSON values)."""
    values = typed_field(mapping, name, list, f"a list of {length} numbers")
    if len(values) != length:
        raise ValueError(f"{prefix}{name} must hold {length} numbers, got {len(values)}")
    return [decode_float(x, prefix + name) for x in values]


def _flat(table):
    return None if table is None else table.reshape(-1)


def _added(a, b):
    """The sums of `_row_sums` for two chunks of rows together."""
    out = {}
    for name, x in a.items():
        y = b[name]
        if x is None:
            out[name] = None
        elif name == "group_table" and len(y) > len(x):
            out[name] = y.copy()
            out[name][:len(x)] += x
        else:
            out[name] = x.copy()
            out[name][:len(y)] += y
    return out


class _GroupIds:
    """Checked group ids: ``ids`` int64 (rows,) as the kernel reads rows, ``n_groups`` the
    largest id + 1 (the group table's length)."""

    def __init__(self, ids, n_groups):
        self.ids = ids
        self.n_groups = n_groups

    def rows(self, start, stop):
        """The ids of rows [start, stop) (the table keeps its length)."""
        return _GroupIds(self.ids[start:stop], self.n_groups)


def _group_ids(groups, rows_shape):
    """`groups` checked, as a ``_GroupIds``, or None.

    Raises TypeError for ids that are not integers and ValueError for a shape that is not
    the rows', or an id that is negative or above ``MAX_GROUP_ID``.
    """
    if groups is None:
        return None
    g = v.as_array(groups, "groups")
    if g.dtype.kind not in "iu":
        raise TypeError(f"groups must hold integer group ids, got dtype {g.dtype}")
    if g.shape != rows_shape:
        raise ValueError(f"groups must have the rows' shape {rows_shape}, got {g.shape}")
    g = g.reshape(-1)
    if not g.size:
        return _GroupIds(np.zeros(0, dtype=np.int64), 0)
    low, high = g.min(), g.max()
    if low < 0 or high > MAX_GROUP_ID:
        bad = int(np.argmax(g < 0)) if low < 0 else int(np.argmax(g > MAX_GROUP_ID))
        index = ", ".join(map(str, np.unravel_index(bad, rows_shape)))
        raise ValueError(f"groups[{index}] = {g[bad]}: group ids must be ints in [0, "
                         f"{MAX_GROUP_ID}] (number arbitrary ids with "
                         f"np.unique(ids, return_inverse=True))")
    return _GroupIds(np.ascontiguousarray(g, dtype=np.int64), int(high) + 1)


def _confusion(labels, prediction, sample_weight, n_classes):
    """The (C, C) confusion matrix of the counted rows with a prediction (no NaN)."""
    keep = prediction >= 0
    index = labels[keep] * n_classes + prediction[keep]
    weights = None if sample_weight is None else sample_weight[keep]
    counts = np.bincount(index, weights=weights, minlength=n_classes * n_classes)
    return counts.astype(np.float64).reshape(n_classes, n_classes)


@docs.doc(f"""Every evaluation metric of a classifier in one read of the data, with what it
    means: baselines, intervals, where the loss comes from.

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
        Per-class weights of the loss (only the loss and what derives from it: its interval,
        the baselines, the skill, the concentration, the tables' losses). They must be
        finite (negative weights are used as given, as PyTorch does).
    sample_weight : array_like, optional
        Per-row weights of every metric, shaped like the rows.
    groups : array_like of int, optional
        A group id per row (document, domain, language, annotator...), shaped like the rows:
        ints in [0, 2**24 - 1]. The result's ``groups`` table has every metric per group, from
        the same pass.
    per_class : bool, default=False
        Add the per-class table (``result.per_class``): count, weight, loss, recall,
        precision, confidence and calibration gap per class. Needs integer labels.
    confusion : bool, default=False
        Add the confusion matrix (``result.confusion``, C <= 4096). Needs integer labels;
        costs an N-sized per-row output (16 bytes a row).
    prior : array_like of shape (C,), optional
        The class prior of the baseline (e.g. the training set's class frequencies): finite,
        non-negative, with a positive sum (divided by it). By default the weighted label
        distribution of the rows evaluated.
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
        loss (nats and bits, with its standard error and 95 % interval), perplexity,
        accuracy and top-k (with Wilson intervals), entropy, brier, ece, the uniform and
        prior baselines and the skill score, the loss concentration, and the tables asked
        for (see ``docs/evaluation.md`` for the exact definitions).

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> r = fastxent.evaluate(np.array([[0.4, 0.4, 0.2], [0.1, 0.2, 0.7]]),
    ...                       np.array([1, 2]), from_logits=False, topk=(1, 2))
    >>> round(r.loss, 6), r.accuracy, r.topk
    (0.636483, 0.5, {{1: 0.5, 2: 1.0}})
    >>> round(r.uniform_loss, 4), round(r.prior_loss, 4), round(r.skill, 3)
    (1.0986, 0.6931, 0.082)
    """)
def evaluate(input, target, *, from_logits=True, topk=(1, 5), weight=None, sample_weight=None,
             groups=None, per_class=False, confusion=False, prior=None, ignore_index=None,
             eps=None, axis=-1, validate=True, n_threads=None):
    return Evaluator(from_logits=from_logits, topk=topk, weight=weight,
                     ignore_index=ignore_index, eps=eps, axis=axis, validate=validate,
                     n_threads=n_threads, per_class=per_class, confusion=confusion,
                     prior=prior).update(input, target, sample_weight, groups).result()


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
