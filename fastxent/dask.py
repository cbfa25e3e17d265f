"""Dask adapter: ``evaluate``, ``evaluate_linear`` and ``cross_entropy`` on Dask arrays, block
by block.

``import fastxent.dask`` needs Dask (``pip install ".[dask]"`` from a fastxent checkout;
``fastxent`` itself never imports it)::

    import dask.array as da
    import fastxent.dask

    logits = da.from_zarr("logits.zarr")          # (N, C), chunked along the rows
    labels = da.from_zarr("labels.zarr")          # (N,)
    result = fastxent.dask.evaluate(logits, labels)
    loss = fastxent.dask.cross_entropy(logits, labels).compute()

    hidden = da.from_zarr("hidden.zarr")          # (N, d), chunked along the rows only
    result = fastxent.dask.evaluate_linear(hidden, lm_head_weight, labels)

Each block of rows runs through fastxent's kernels on a worker: ``evaluate`` turns it into
the float64 sums of a ``fastxent.Evaluator`` (shipped as its small ``to_dict()`` state) and
merges those in a tree with ``Evaluator.merge``, so the result equals ``fastxent.evaluate``
on the whole array up to float64 rounding, its per-class, confusion and per-group tables
(``per_class``, ``confusion``, ``groups=``) too. ``evaluate_linear`` does the same from hidden
states, each block computing its logits ``H @ W.T + b`` in chunks through
``Evaluator.update_linear``; W and b are sent once to each worker, not with each task. Its
result equals ``fastxent.evaluate_linear`` up to the rounding of the logits (a row's
logits can round differently when a GEMM covers other rows).
``cross_entropy`` returns the per-row losses as a
Dask array, or adds each block's loss sum (and ``mean``'s denominator) in a tree into a lazy
0-d Dask array. Any scheduler works: the threaded default, processes, or a
``dask.distributed`` cluster. See ``docs/dask.md``.
"""

import contextlib
import dataclasses
import functools
import math
import sys
from dataclasses import dataclass

import numpy as np

try:
    import dask
    import dask.array as da
    from dask import delayed
except ImportError as exc:      # pragma: no cover - depends on the environment
    raise ImportError('fastxent.dask needs Dask: pip install "dask[array]" distributed (or '
                      'pip install ".[dask]" from a fastxent checkout)') from exc

import fastxent
from fastxent._api import linear as _linear
from fastxent._api import multiclass as _multiclass
from fastxent._api import validation as v
from fastxent._api.options import CrossEntropyOptions, EvaluationOptions

__all__ = ["cross_entropy", "evaluate", "evaluate_linear"]

SPLIT_EVERY = 8


def _check_split_every(split_every):
    if split_every is None:
        return SPLIT_EVERY
    return v.check_int(split_every, "split_every", low=2, must="be an int >= 2 or None",
                       type_error=ValueError)


def _check_known_chunks(a, name):
    if any(math.isnan(size) for sizes in a.chunks for size in sizes):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() "
                         f"first")


def _as_dask_or_numpy(a, name):
    """`a` itself when it is a Dask array (with known chunk sizes), else as a NumPy array
    (with fastxent's clear error for arrays NumPy cannot view, such as torch tensors that
    require grad)."""
    if isinstance(a, da.Array):
        _check_known_chunks(a, name)
        return a
    return v.as_array(a, name)


def _dask_like(a, chunks):
    """`a` (from ``_as_dask_or_numpy``) as a Dask array with exactly `chunks`."""
    if isinstance(a, da.Array):
        return a.rechunk(chunks)
    return da.from_array(a, chunks=chunks)


def _no_rows(shape, row_axis):
    return shape[:row_axis] + (0,) + shape[row_axis + 1:]


def _per_row_arrays(arrays, rows_shape, rows_chunks):
    """The per-row arrays given, checked and aligned.

    `arrays` maps a keyword of the single-machine call (``"sample_weight"``, ``"groups"``) to
    an array or None. Returns a dict of those given, in the same order: each a Dask array in
    the input's blocks of rows (`rows_chunks`), after checking that it has the rows' shape
    (fastxent's message; its dtype is checked by the zero-row check of the caller).
    """
    aligned = {}
    for name, array in arrays.items():
        if array is None:
            continue
        array = _as_dask_or_numpy(array, name)
        if array.shape != rows_shape:
            raise ValueError(f"{name} must have the rows' shape {rows_shape}, got "
                             f"{array.shape}")
        aligned[name] = _dask_like(array, rows_chunks)
    return aligned


def _no_rows_like(per_row):
    """Zero-row NumPy arrays of the shapes (but no rows) and dtypes of `per_row`'s arrays."""
    return {name: np.zeros(_no_rows(a.shape, 0), a.dtype) for name, a in per_row.items()}


@dataclass
class _Blocks:
    """The inputs of one call, aligned block for block.

    `x`, `t` and the arrays of `per_row` (keyword -> array: ``sample_weight``, ``groups``, as
    given) have the same number of dimensions and the same chunks along every axis but
    `axis`, the class axis, which is one chunk: labels and per-row arrays get a class axis of
    length 1 (``of`` adds it, ``_block_args`` removes it again in each block).
    """

    x: da.Array
    t: da.Array
    per_row: dict[str, da.Array]
    axis: int

    @classmethod
    def of(cls, x, t, per_row, axis):
        """The blocks of `x` (its class `axis` one chunk), `t` (labels shaped like the rows,
        or soft targets shaped like `x`) and `per_row` (shaped like the rows), all in `x`'s
        blocks of rows: adds the class axis of 1 to the labels and per-row arrays."""
        return cls(x=x, t=da.expand_dims(t, axis) if t.dtype.kind in "iu" else t,
                   per_row={name: da.expand_dims(a, axis) for name, a in per_row.items()},
                   axis=axis)

    def arrays(self):
        """`x`, `t` and the per-row arrays, in the order of ``per_row``."""
        return (self.x, self.t, *self.per_row.values())

    def delayed(self):
        """An iterator of ``(rows, input, target, per_row)`` per block: Delayed arrays, and
        `per_row` a dict of the block's per-row arrays (Delayed) by keyword.

        `rows` is the block's place among the rows, as ``((start, stop), ...)``; the arrays
        are optimised together, so an upstream step that they share runs once.
        """
        arrays = dask.optimize(*self.arrays())
        blocks = [a.to_delayed(optimize_graph=False).ravel() for a in arrays]
        rows_chunks = self.x.chunks[:self.axis] + self.x.chunks[self.axis + 1:]
        bounds = [np.cumsum((0,) + sizes) for sizes in rows_chunks]
        places = [tuple((int(b[i]), int(b[i + 1])) for b, i in zip(bounds, index, strict=True))
                  for index in np.ndindex(*map(len, rows_chunks))]
        for place, x, t, *per_row in zip(places, *blocks, strict=True):
            yield place, x, t, dict(zip(self.per_row, per_row, strict=True))


def _align(input, target, per_row, options, check):
    """Wrap, check and align the inputs of a call; return a `_Blocks` and `options` with
    the class axis counted from the front.

    The class axis of the input is rechunked into one chunk (a block holds whole rows), the
    target and the per-row arrays (`per_row`: keyword -> array or None, as for
    ``_per_row_arrays``) to the input's blocks of rows. ``check(x, t, per_row, options)`` is
    the single-machine check, called on zero-row arrays of the same shapes and dtypes, so
    that bad data shapes and dtypes raise here, when the graph is built, rather than on a
    worker.
    """
    x = _as_dask_or_numpy(input, "input")
    if x.ndim < 2:
        raise ValueError(f"input must have a class axis and at least one axis of rows to "
                         f"split into blocks, got shape {x.shape}")
    axis = v.check_axis(options.axis, x.shape)
    _, _, rows_shape = v.class_layout(x, axis)
    options = dataclasses.replace(options, axis=axis)
    x = x.rechunk({axis: -1}) if isinstance(x, da.Array) else da.from_array(x, {axis: -1})
    rows_chunks = x.chunks[:axis] + x.chunks[axis + 1:]

    target = _as_dask_or_numpy(target, "target")
    t_dtype = target.dtype
    labels = t_dtype.kind in "iu"
    if not labels and t_dtype.kind != "f":
        raise TypeError(f"target must hold integer class labels or float soft targets, got "
                        f"dtype {t_dtype}")
    t_shape = rows_shape if labels else x.shape
    if target.shape != t_shape:
        kind = "integer class labels" if labels else "soft targets"
        raise ValueError(f"{kind} must have shape {t_shape} (input {x.shape}, class axis "
                         f"{axis}), got {target.shape}")
    t = _dask_like(target, rows_chunks if labels else x.chunks)
    per_row = _per_row_arrays(per_row, rows_shape, rows_chunks)

    row_axis = 1 if axis == 0 else 0        # the first axis of rows, in the input
    check(np.zeros(_no_rows(x.shape, row_axis), x.dtype),
          np.zeros(_no_rows(t.shape, 0 if labels else row_axis), t.dtype),
          _no_rows_like(per_row), options)
    return _Blocks.of(x, t, per_row, axis), options


def _block_args(x, t, per_row, options):
    """A block's arrays as the single-machine functions take them (no class axis of 1)."""
    axis = options.axis
    if t.dtype.kind in "iu":
        t = t.squeeze(axis)
    return x, t, {name: a.squeeze(axis) for name, a in per_row.items()}


@contextlib.contextmanager
def _in_block(rows):
    """Add to a ValueError (a bad label or value) which block of rows it came from."""
    try:
        yield
    except ValueError as exc:
        where = ", ".join(f"{start}:{stop}" for start, stop in rows)
        raise ValueError(f"{exc} (indices within the block of rows [{where}])") from exc


def _tree(parts, combine, finish, split_every):
    """Reduce Delayed `parts` in a tree: ``combine(*parts)`` of at most `split_every` parts
    gives a part, until ``finish(*parts)`` of the last (at most `split_every`) gives the
    result."""
    while len(parts) > split_every:
        parts = [delayed(combine, pure=True)(*parts[i:i + split_every])
                 for i in range(0, len(parts), split_every)]
    return delayed(finish, pure=True)(*parts)


# --- evaluate --------------------------------------------------------------------------

def _evaluated(x, t, per_row, options):
    """An Evaluator with `options` (an ``EvaluationOptions``) that has seen the rows
    (`per_row`: the keywords ``sample_weight`` and ``groups`` of ``Evaluator.update``)."""
    return fastxent.Evaluator(**options.keywords()).update(x, t, **per_row)


def _evaluate_block(rows, x, t, per_row, options):
    """One block of rows -> the ``to_dict()`` state of an Evaluator that has seen it."""
    x, t, per_row = _block_args(x, t, per_row, options)
    with _in_block(rows):
        return _evaluated(x, t, per_row, options).to_dict()


def _merged(states):
    ev = fastxent.Evaluator.from_dict(states[0])
    for state in states[1:]:
        ev.merge(fastxent.Evaluator.from_dict(state))
    return ev


def _merge_states(*states):
    return _merged(states).to_dict()


def _evaluation_result(*states):
    return _merged(states).result()


def evaluate(input, target, *, from_logits=True, topk=(1, 5), weight=None, sample_weight=None,
             groups=None, per_class=False, confusion=False, prior=None, ignore_index=None,
             eps=None, axis=-1, validate=True, n_threads=None, split_every=None,
             compute=True):
    """``fastxent.evaluate`` over a Dask array, block by block, merged exactly.

    Each block of rows becomes the float64 sums of a ``fastxent.Evaluator`` on a worker; the
    sums are merged in a tree of ``Evaluator.merge`` calls, so the result is that of
    ``fastxent.evaluate`` on the whole array up to float64 rounding (about 1e-15 relative),
    whatever the chunks: its per-class, confusion and per-group tables too.

    Parameters
    ----------
    input : dask.array.Array or array_like
        Logits or probabilities, classes along `axis`, chunked along the other axes (the
        rows). The class axis is rechunked into one chunk when it is split, so a block
        holds whole rows. NumPy input is wrapped with ``dask.array.from_array`` (automatic
        chunks).
    target : dask.array.Array or array_like
        Integer class labels shaped like the rows, or float soft targets shaped like
        `input`; rechunked to the input's blocks of rows.
    sample_weight : dask.array.Array or array_like, optional
        Per-row weights shaped like the rows; rechunked to the input's blocks of rows.
    groups : dask.array.Array or array_like of int, optional
        A group id per row (document, domain, language...) shaped like the rows, ints in
        [0, 2**24 - 1]; rechunked to the input's blocks of rows. The result's ``groups``
        table has every metric per group, whichever blocks a group's rows fall in. Each
        block's state carries a table up to the largest id it holds, so keep the ids dense
        (``np.unique(ids, return_inverse=True)``).
    from_logits, topk, weight, per_class, confusion, prior, ignore_index, eps, axis, validate
        As for ``fastxent.evaluate``. `weight` and `prior` are small arrays sent with every
        task.
    n_threads : int, optional
        OpenMP threads of each block's kernel call, as for ``fastxent.evaluate``: None uses
        the usable cores of the process that runs the task, or its ``OMP_NUM_THREADS``,
        which ``dask.distributed`` workers set to 1 by default: on a cluster each block
        runs on one thread unless `n_threads` says otherwise. With Dask's threaded
        scheduler, which already runs a task per core, pass ``n_threads=1``.
    split_every : int >= 2, optional
        How many states each merge task combines (default 8).
    compute : bool, default=True
        Compute now (with the current Dask scheduler or ``distributed.Client``) and return
        the result, or return a ``dask.delayed.Delayed`` that computes it.

    Returns
    -------
    fastxent.EvaluationResult or dask.delayed.Delayed
        The graph holds one task per block of rows (plus any that make the inputs) and
        about ``n_blocks / (split_every - 1)`` merge tasks.

    Raises
    ------
    ValueError, TypeError
        Bad shapes, dtypes and options raise here, as ``fastxent.evaluate`` would; invalid
        labels, group ids or probabilities raise from the computation (``compute=True``, or
        the Delayed's ``compute()``), naming the block of rows.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastxent.dask
    >>> logits = da.from_array(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), chunks=(2, 2))
    >>> r = fastxent.dask.evaluate(logits, np.array([0, 1, 1]), topk=(1,))
    >>> round(r.accuracy, 4), r.count
    (0.6667, 3)
    >>> r = fastxent.dask.evaluate(logits, np.array([0, 1, 1]), groups=np.array([0, 0, 1]))
    >>> r.groups.keys.tolist(), r.groups.count.tolist()
    ([0, 1], [2, 1])
    """
    split_every = _check_split_every(split_every)
    options = EvaluationOptions(from_logits=from_logits, topk=topk, weight=weight,
                                ignore_index=ignore_index, eps=eps, axis=axis,
                                validate=validate, n_threads=n_threads, per_class=per_class,
                                confusion=confusion, prior=prior)
    blocks, options = _align(input, target,
                             {"sample_weight": sample_weight, "groups": groups}, options,
                             _evaluated)
    states = [delayed(_evaluate_block, pure=True)(rows, x, t, per_row, options)
              for rows, x, t, per_row in blocks.delayed()]
    result = _tree(states, _merge_states, _evaluation_result, split_every)
    return result.compute() if compute else result


# --- evaluate_linear -------------------------------------------------------------------

def _linear_evaluated(x, t, per_row, linear_weight, linear_bias, options, chunk_rows):
    """An Evaluator with `options` that has seen the rows given as a linear layer's inputs
    (`per_row` as for ``_evaluated``)."""
    return fastxent.Evaluator(**options.keywords()).update_linear(
        x, linear_weight, t, linear_bias=linear_bias, chunk_rows=chunk_rows, **per_row)


def _evaluate_linear_block(rows, x, t, per_row, linear_weight, linear_bias, options,
                           chunk_rows):
    """One block of hidden states -> the ``to_dict()`` state of an Evaluator that has seen
    it."""
    x, t, per_row = _block_args(x, t, per_row, options)
    with _in_block(rows):
        return _linear_evaluated(x, t, per_row, linear_weight, linear_bias, options,
                                 chunk_rows).to_dict()


def _distributed_client():
    """The ``distributed.Client`` that computes Dask collections now, or None (there is none
    unless ``distributed`` has been imported)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    return client if isinstance(client, distributed.Client) else None


def _broadcast(array, name):
    """`array` as one value that every block task depends on, never copied into the tasks.

    With a ``distributed.Client`` as the scheduler, the array is scattered to every worker
    (a Future); otherwise it is one key of the graph (a Delayed). Passed as such, Dask sends
    it once to each worker process; a NumPy array passed as a task's argument would instead
    be embedded in every task.
    """
    if array is None:
        return None
    client = _distributed_client()
    if client is not None:
        return client.scatter(array, broadcast=True, hash=True)
    return delayed(array, pure=True, name=f"{name}-{dask.base.tokenize(array)}")


def _align_linear(input, target, per_row, linear_weight, linear_bias, options, chunk_rows):
    """Wrap, check and align the inputs of ``evaluate_linear``.

    Returns the `_Blocks` (hidden states (N, d) in blocks of whole rows; labels and the
    per-row arrays with an axis of 1 after the rows, soft targets (N, V) in one chunk of
    classes) and the weight and bias as the kernels take them (``linear.prepare``'s
    conversion, done once here rather than in every block). Every check of the
    single-machine ``Evaluator.update_linear`` runs here, on zero rows, so that bad shapes,
    dtypes and options raise when the graph is built.
    """
    x = _as_dask_or_numpy(input, "input")
    if x.ndim != 2:
        raise ValueError(f"input must be hidden states of shape (N, d), chunked along the "
                         f"rows, got shape {x.shape}")
    if isinstance(x, da.Array):
        if len(x.chunks[1]) > 1:
            raise ValueError(f"input is chunked along d, its axis 1 (chunks {x.chunks[1]}); "
                             f"each block must hold whole hidden states: pass "
                             f"input.rechunk({{1: -1}})")
    else:
        x = da.from_array(x, chunks=("auto", -1))
    rows_chunks = x.chunks[:1]

    target = _as_dask_or_numpy(target, "target")
    labels = target.dtype.kind in "iu"
    if not labels and target.dtype.kind != "f":
        raise TypeError(f"target must hold integer class labels or float soft targets, got "
                        f"dtype {target.dtype}")
    if labels and target.shape != x.shape[:1]:
        raise ValueError(f"integer class labels must have shape {x.shape[:1]} (input "
                         f"{x.shape}), got {target.shape}")
    if not labels and (target.ndim != 2 or target.shape[0] != x.shape[0]):
        raise ValueError(f"soft targets must have shape ({x.shape[0]}, V) (input {x.shape}), "
                         f"got {target.shape}")
    t = _dask_like(target, rows_chunks if labels else rows_chunks + (target.shape[1],))
    per_row = _per_row_arrays(per_row, x.shape[:1], rows_chunks)

    # The shapes the zero-row check below cannot name: the user's, not its own.
    weight_shape = np.shape(linear_weight)
    if len(weight_shape) != 2 or weight_shape[1] != x.shape[1]:
        raise ValueError(f"linear_weight must have shape (V, {x.shape[1]}) for input of shape "
                         f"{x.shape}, got {weight_shape}")
    if not labels and target.shape[1] != weight_shape[0]:
        raise ValueError(f"soft targets must have shape {(x.shape[0], weight_shape[0])} "
                         f"(input {x.shape}, linear_weight {weight_shape}), got "
                         f"{target.shape}")
    x0 = np.zeros((0, x.shape[1]), x.dtype)
    t0 = np.zeros((0,) + t.shape[1:], t.dtype)
    prepared = _linear.prepare(x0, linear_weight, t0, linear_bias, options,
                               chunk_rows=chunk_rows)
    _linear_evaluated(x0, t0, _no_rows_like(per_row), prepared.weight, prepared.bias,
                      options, chunk_rows)
    return _Blocks.of(x, t, per_row, 1), prepared.weight, prepared.bias


def evaluate_linear(input, linear_weight, target, *, linear_bias=None, topk=(1, 5),
                    weight=None, sample_weight=None, groups=None, per_class=False,
                    confusion=False, prior=None, ignore_index=None, chunk_rows=None,
                    n_threads=None, split_every=None, compute=True):
    """``fastxent.evaluate_linear`` over hidden states in a Dask array, block by block.

    Each block of rows computes its logits ``input @ linear_weight.T + linear_bias`` in
    chunks of `chunk_rows` rows (``fastxent.Evaluator.update_linear``, never a block's whole
    logits) and becomes the float64 sums of an Evaluator on a worker; the sums are merged in
    a tree, as ``evaluate`` merges them (exactly, in float64), so the result is that of
    ``fastxent.evaluate_linear`` on the whole array up to the rounding of the logits: a
    row's logits can round differently when a block's GEMM covers other rows (about 1e-6
    relative in float32).

    Parameters
    ----------
    input : dask.array.Array or array_like of shape (N, d)
        Hidden states, float32 or float64, chunked along the rows only (a block holds whole
        hidden states: an array chunked along d is refused; ``input.rechunk({1: -1})``).
        NumPy input is wrapped with ``dask.array.from_array`` (automatic chunks of rows).
    linear_weight : array_like of shape (V, d)
        The output layer's weight, `input`'s dtype (a mismatch is an error). It is sent once
        to each worker, not with each task: scattered to every worker
        (``Client.scatter(broadcast=True)``) when a ``distributed.Client`` is the scheduler,
        else one key of the graph that every block task depends on. A Dask array is computed
        first.
    target : dask.array.Array or array_like
        Integer class labels (N,), or float soft targets (N, V); rechunked to the input's
        blocks of rows.
    linear_bias : array_like of shape (V,), optional
        The output layer's bias, sent as `linear_weight` is.
    sample_weight : dask.array.Array or array_like of shape (N,), optional
        Per-row weights; rechunked to the input's blocks of rows.
    groups : dask.array.Array or array_like of int, shape (N,), optional
        A group id per row (the document of each token, say), as for ``evaluate``; rechunked
        to the input's blocks of rows.
    topk, weight, per_class, confusion, prior, ignore_index
        As for ``fastxent.evaluate``. `weight` and `prior` are small arrays sent with every
        task.
    chunk_rows : int >= 1, optional
        Rows per chunk of logits within a block (see ``fastxent.linear_cross_entropy``).
    n_threads : int, optional
        BLAS's threads in each block's GEMMs (and the label checks'), as for
        ``fastxent.evaluate_linear``; the cross-entropy kernel runs on the task's thread.
        None leaves BLAS at the default of the process that runs the task (a
        ``dask.distributed`` nanny sets ``OPENBLAS_NUM_THREADS=1`` and
        ``OMP_NUM_THREADS=1``). With Dask's threaded scheduler, which already runs a task
        per core, pass ``n_threads=1``.
    split_every : int >= 2, optional
        How many states each merge task combines (default 8).
    compute : bool, default=True
        Compute now and return the result, or return a ``dask.delayed.Delayed``. With a
        ``distributed.Client`` as the scheduler, that Delayed holds the scattered weight and
        computes only on that client.

    Returns
    -------
    fastxent.EvaluationResult or dask.delayed.Delayed

    Raises
    ------
    ValueError, TypeError
        Bad shapes, dtypes and options raise here, as ``fastxent.Evaluator.update_linear``
        would; invalid labels and group ids raise from the computation, naming the block of
        rows.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastxent.dask
    >>> hidden = da.from_array(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), chunks=(2, 2))
    >>> weight = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> r = fastxent.dask.evaluate_linear(hidden, weight, np.array([0, 1, 2]), topk=(1,))
    >>> round(r.accuracy, 4), r.count
    (0.6667, 3)
    """
    split_every = _check_split_every(split_every)
    options = EvaluationOptions(topk=topk, weight=weight, ignore_index=ignore_index,
                                n_threads=n_threads, per_class=per_class, confusion=confusion,
                                prior=prior)
    blocks, linear_weight, linear_bias = _align_linear(
        input, target, {"sample_weight": sample_weight, "groups": groups}, linear_weight,
        linear_bias, options, chunk_rows)
    shared_weight = _broadcast(linear_weight, "linear_weight")
    shared_bias = _broadcast(linear_bias, "linear_bias")
    states = [delayed(_evaluate_linear_block, pure=True)(rows, x, t, per_row, shared_weight,
                                                         shared_bias, options, chunk_rows)
              for rows, x, t, per_row in blocks.delayed()]
    result = _tree(states, _merge_states, _evaluation_result, split_every)
    return result.compute() if compute else result


# --- cross_entropy ---------------------------------------------------------------------

def _prepared(x, t, per_row, options):
    """The single-machine validation of `options` (``CrossEntropyOptions``) on the rows
    (`per_row`: the keyword ``sample_weight``, if given)."""
    return _multiclass.prepare(x, t, options, **per_row)


def _losses_block(x, t, *per_row, names, options, block_info=None):
    """One block of rows -> its per-row losses (`options` has ``reduction="none"``); the
    per-row arrays come after `t`, in the order of their keywords `names` (``map_blocks``
    passes arrays positionally)."""
    x, t, per_row = _block_args(x, t, dict(zip(names, per_row, strict=True)), options)
    with _in_block(block_info[None]["array-location"]):
        return _multiclass.run(_prepared(x, t, per_row, options), None)


def _sum_block(rows, x, t, per_row, options, with_denominator):
    """One block of rows -> ``(loss sum, mean's denominator or 0)`` in float64.

    Both come from the single-machine validation and kernel (`options` has
    ``reduction="sum"``; ``_multiclass.prepare`` computes the denominator:
    ``Σ sample_weight·weight[label]`` over the counted rows, or the row count /
    ``Σ sample_weight`` for soft targets).
    """
    x, t, per_row = _block_args(x, t, per_row, options)
    with _in_block(rows):
        problem = _prepared(x, t, per_row, options)
        total = _multiclass.run(problem, None)
    return float(total), problem.denominator if with_denominator else 0.0


def _add_sums(*pairs):
    return tuple(map(math.fsum, zip(*pairs, strict=True)))


def _reduce_sums(reduction, dtype, *pairs):
    """The root of the tree: the sum, or the mean (NaN over no weight), in `dtype`."""
    total, denominator = _add_sums(*pairs)
    if reduction == "sum":
        return dtype.type(total)
    return dtype.type(total / denominator if denominator != 0 else np.nan)


def cross_entropy(input, target, *, from_logits=True, weight=None, sample_weight=None,
                  ignore_index=None, label_smoothing=0.0, eps=None, reduction="mean", axis=-1,
                  validate=True, n_threads=None, split_every=None):
    """``fastxent.cross_entropy`` over a Dask array: a lazy Dask array.

    Parameters
    ----------
    input : dask.array.Array or array_like
        Logits or probabilities, classes along `axis`, chunked along the other axes (the
        rows). The class axis is rechunked into one chunk when it is split. NumPy input is
        wrapped with ``dask.array.from_array`` (automatic chunks).
    target : dask.array.Array or array_like
        Integer class labels shaped like the rows, or float soft targets shaped like
        `input`; rechunked to the input's blocks of rows.
    sample_weight : dask.array.Array or array_like, optional
        Per-row weights shaped like the rows; rechunked to the input's blocks of rows.
    from_logits, weight, ignore_index, label_smoothing, eps, reduction, axis, validate
        As for ``fastxent.cross_entropy``. `weight` is a small array sent with every task.
    n_threads : int, optional
        OpenMP threads of each block's kernel call, as for ``evaluate`` (on a
        ``dask.distributed`` worker, one by default).
    split_every : int >= 2, optional
        How many block sums each task of the ``"sum"``/``"mean"`` tree adds (default 8).

    Returns
    -------
    dask.array.Array
        Of fastxent's computation dtype (float32 for float32 input, float64 otherwise).
        ``reduction="none"``: the per-row losses, shaped and chunked like the rows (one
        task per block). ``"sum"`` and ``"mean"``: a 0-d array; each block's loss sum (and
        ``mean``'s denominator: ``Σ sample_weight·weight[label]`` over the rows not ignored,
        or with soft targets the row count or ``Σ sample_weight``) is added in float64 in a
        tree, so ``mean`` is the whole array's mean, not a mean of block means. Nothing is
        computed until ``.compute()``.

    Raises
    ------
    ValueError, TypeError
        Bad shapes and options raise here, as ``fastxent.cross_entropy`` would; invalid
        labels or probabilities raise from ``.compute()``.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastxent.dask
    >>> probs = da.from_array(np.array([[0.4, 0.4, 0.2], [0.1, 0.8, 0.1]]), chunks=(1, 3))
    >>> loss = fastxent.dask.cross_entropy(probs, np.array([1, 1]), from_logits=False)
    >>> round(float(loss.compute()), 6)
    0.569717
    """
    split_every = _check_split_every(split_every)
    options = CrossEntropyOptions(from_logits=from_logits, weight=weight,
                                  ignore_index=ignore_index, label_smoothing=label_smoothing,
                                  eps=eps, reduction=reduction, axis=axis, validate=validate,
                                  n_threads=n_threads)
    blocks, options = _align(input, target, {"sample_weight": sample_weight}, options,
                             _prepared)
    dtype = v.computation_dtype(blocks.x.dtype)

    if reduction == "none":
        return da.map_blocks(_losses_block, *blocks.arrays(), names=tuple(blocks.per_row),
                             options=options, token="cross_entropy_none",
                             drop_axis=blocks.axis, dtype=dtype,
                             meta=np.empty((0,) * (blocks.x.ndim - 1), dtype))
    options = dataclasses.replace(options, reduction="sum")
    sums = [delayed(_sum_block, pure=True)(rows, x, t, per_row, options, reduction == "mean")
            for rows, x, t, per_row in blocks.delayed()]
    root = _tree(sums, _add_sums, functools.partial(_reduce_sums, reduction, dtype),
                 split_every)
    return da.from_delayed(root, shape=(), dtype=dtype, meta=np.empty((), dtype),
                           name=f"cross_entropy_{reduction}-{root.key.rsplit('-', 1)[-1]}")
