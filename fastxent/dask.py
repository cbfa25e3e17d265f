"""Dask adapter: ``evaluate`` and ``cross_entropy`` on Dask arrays, block by block.

``import fastxent.dask`` needs Dask (``pip install "fastxent[dask]"``; ``fastxent`` itself
never imports it)::

    import dask.array as da
    import fastxent.dask

    logits = da.from_zarr("logits.zarr")          # (N, C), chunked along the rows
    labels = da.from_zarr("labels.zarr")          # (N,)
    result = fastxent.dask.evaluate(logits, labels)
    loss = fastxent.dask.cross_entropy(logits, labels).compute()

Each block of rows runs through fastxent's kernels on a worker: ``evaluate`` turns it into
the float64 sums of a ``fastxent.Evaluator`` (shipped as its small ``to_dict()`` state) and
merges those in a tree with ``Evaluator.merge``, so the result equals ``fastxent.evaluate``
on the whole array up to float64 rounding; ``cross_entropy`` returns the per-row losses as a
Dask array, or adds each block's loss sum (and ``mean``'s denominator) in a tree into a lazy
0-d Dask array. Any scheduler works: the threaded default, processes, or a
``dask.distributed`` cluster. See ``docs/dask.md``.
"""

import functools
import math

import numpy as np

try:
    import dask
    import dask.array as da
    from dask import delayed
except ImportError as exc:      # pragma: no cover - depends on the environment
    raise ImportError('fastxent.dask needs Dask: pip install "fastxent[dask]" '
                      '(or pip install "dask[array]" distributed)') from exc

import fastxent

__all__ = ["cross_entropy", "evaluate"]

SPLIT_EVERY = 8


def _compute_dtype(dtype):
    """fastxent's computation dtype for an input of `dtype`."""
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _check_split_every(split_every):
    if split_every is None:
        return SPLIT_EVERY
    if isinstance(split_every, bool) or not isinstance(split_every, (int, np.integer)) \
            or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2 or None, got {split_every!r}")
    return int(split_every)


def _check_known_chunks(a, name):
    if any(math.isnan(size) for sizes in a.chunks for size in sizes):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes() "
                         f"first")


def _dask_like(a, chunks, name):
    """`a` as a Dask array with exactly `chunks` (numpy input is wrapped, Dask rechunked)."""
    if isinstance(a, da.Array):
        _check_known_chunks(a, name)
        return a.rechunk(chunks)
    return da.from_array(np.asarray(a), chunks=chunks)


def _empty_rows(shape, row_axis):
    return shape[:row_axis] + (0,) + shape[row_axis + 1:]


def _align(input, target, sample_weight, axis, check):
    """Wrap and align the arrays; check shapes and options on empty stand-ins.

    Returns the input with its class axis in one chunk, the target and sample weight
    rechunked to the input's blocks of rows, and the normalised class axis. `check` is the
    single-machine function, called on zero-row arrays of the same shapes and dtypes so that
    a bad option or shape raises here, when the graph is built, rather than on a worker.
    """
    if isinstance(input, da.Array):
        _check_known_chunks(input, "input")
        x = input
    else:
        x = da.from_array(np.asarray(input))
    if x.ndim < 2:
        raise ValueError(f"input must have a class axis and at least one axis of rows to "
                         f"split into blocks, got shape {x.shape}")
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of bounds for input of shape {x.shape}")
    axis %= x.ndim
    x = x.rechunk({axis: -1})               # a block holds whole rows
    rows_shape = x.shape[:axis] + x.shape[axis + 1:]
    rows_chunks = x.chunks[:axis] + x.chunks[axis + 1:]

    t_dtype = target.dtype if hasattr(target, "dtype") else np.asarray(target).dtype
    if t_dtype.kind in "iu":                # class labels: shaped like the rows
        t_shape, t_chunks = rows_shape, rows_chunks
    elif t_dtype.kind == "f":               # soft targets: shaped like the input
        t_shape, t_chunks = x.shape, x.chunks
    else:
        raise TypeError(f"target must hold integer class labels or float soft targets, got "
                        f"dtype {t_dtype}")
    if tuple(np.shape(target)) != t_shape:
        kind = "integer class labels" if t_dtype.kind in "iu" else "soft targets"
        raise ValueError(f"{kind} must have shape {t_shape} (input {x.shape}, class axis "
                         f"{axis}), got {tuple(np.shape(target))}")
    t = _dask_like(target, t_chunks, "target")
    s = None
    if sample_weight is not None:
        if tuple(np.shape(sample_weight)) != rows_shape:
            raise ValueError(f"sample_weight must have the rows' shape {rows_shape}, got "
                             f"{tuple(np.shape(sample_weight))}")
        s = _dask_like(sample_weight, rows_chunks, "sample_weight")

    row_axis = 1 if axis == 0 else 0        # in the input; it is axis 0 of target rows
    t_row_axis = row_axis if t_dtype.kind == "f" else 0
    check(np.zeros(_empty_rows(x.shape, row_axis), x.dtype),
          np.zeros(_empty_rows(t.shape, t_row_axis), t.dtype),
          None if s is None else np.zeros(_empty_rows(s.shape, 0), s.dtype),
          axis)
    return x, t, s, axis


def _blocks(x, t, s, axis):
    """Yield ``(input, target, sample_weight)`` Delayed blocks, one triple per block of rows.

    The three arrays are optimised together (so an upstream step they share runs once);
    their blocks line up because `_align` gave them the same chunks along the rows.
    """
    arrays = (x, t) if s is None else (x, t, s)
    arrays = dask.optimize(*arrays)
    x_blocks = np.squeeze(arrays[0].to_delayed(optimize_graph=False), axis).ravel()
    t_blocks = arrays[1].to_delayed(optimize_graph=False)
    if t.ndim == x.ndim:
        t_blocks = np.squeeze(t_blocks, axis)
    t_blocks = t_blocks.ravel()
    s_blocks = ([None] * len(x_blocks) if s is None
                else arrays[2].to_delayed(optimize_graph=False).ravel())
    return zip(x_blocks, t_blocks, s_blocks)


def _tree(parts, combine, finish, split_every):
    """Reduce Delayed `parts` with `combine` in a tree `split_every` wide; `finish` the root.

    ``combine(*parts)`` returns a part; ``finish(*parts)`` combines the last (at most
    `split_every`) parts into the final value.
    """
    while len(parts) > split_every:
        parts = [delayed(combine, pure=True)(*parts[i:i + split_every])
                 for i in range(0, len(parts), split_every)]
    return delayed(finish, pure=True)(*parts)


# --- evaluate --------------------------------------------------------------------------

def _evaluate_block(x, t, s, options):
    """One block of rows -> the ``to_dict()`` state of an Evaluator that has seen it."""
    return fastxent.Evaluator(**options).update(x, t, sample_weight=s).to_dict()


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
             ignore_index=None, eps=None, axis=-1, validate=True, n_threads=None,
             split_every=None, compute=True):
    """``fastxent.evaluate`` over a Dask array, block by block, merged exactly.

    Each block of rows becomes the float64 sums of a ``fastxent.Evaluator`` on a worker; the
    sums are merged in a tree of ``Evaluator.merge`` calls, so the result is that of
    ``fastxent.evaluate`` on the whole array up to float64 rounding (about 1e-15 relative),
    whatever the chunks.

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
    from_logits, topk, weight, ignore_index, eps, axis, validate
        As for ``fastxent.evaluate``. `weight` is a small array sent with every task.
    n_threads : int, optional
        OpenMP threads of each block's kernel call, as for ``fastxent.evaluate``: None uses
        the worker's usable cores (or its ``OMP_NUM_THREADS``). Where Dask already runs
        a task per core (the threaded scheduler, or several worker processes or threads
        per machine), pass ``n_threads=1`` to avoid oversubscription.
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
        Bad shapes and options raise here, as ``fastxent.evaluate`` would; invalid labels
        or probabilities raise from the computation (``compute=True``, or the Delayed's
        ``compute()``).

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastxent.dask
    >>> logits = da.from_array(np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), chunks=(2, 2))
    >>> r = fastxent.dask.evaluate(logits, np.array([0, 1, 1]), topk=(1,))
    >>> round(r.accuracy, 4), r.count
    (0.6667, 3)
    """
    split_every = _check_split_every(split_every)
    options = dict(from_logits=from_logits, topk=topk, weight=weight,
                   ignore_index=ignore_index, eps=eps, validate=validate, n_threads=n_threads)

    def check(x0, t0, s0, axis):
        fastxent.evaluate(x0, t0, sample_weight=s0, axis=axis, **options)

    x, t, s, axis = _align(input, target, sample_weight, axis, check)
    options["axis"] = axis
    if weight is not None:
        options["weight"] = np.asarray(weight)
    states = [delayed(_evaluate_block, pure=True)(xb, tb, sb, options)
              for xb, tb, sb in _blocks(x, t, s, axis)]
    result = _tree(states, _merge_states, _evaluation_result, split_every)
    return result.compute() if compute else result


# --- cross_entropy ---------------------------------------------------------------------

def _block_losses(x, t, s, options):
    return fastxent.cross_entropy(x, t, sample_weight=s, reduction="none", **options)


def _block_sum(x, t, s, options, with_denominator):
    """One block -> ``(loss sum, mean's denominator)`` as float64 (denominator 0 if unused)."""
    total = float(fastxent.cross_entropy(x, t, sample_weight=s, reduction="sum", **options))
    if not with_denominator:
        return total, 0.0
    t = np.asarray(t)
    if t.dtype.kind == "f":                 # soft targets: the row count, or Σ s
        n_rows = t.size // x.shape[options["axis"]]
        return total, float(n_rows if s is None else np.sum(s, dtype=np.float64))
    # labels (already checked by the kernel call): Σ s·weight[y] over the rows not ignored
    labels = t.reshape(-1)
    counted = (np.ones(labels.shape, bool) if options["ignore_index"] is None
               else labels != options["ignore_index"])
    per_row = np.ones(labels.shape)
    if options["weight"] is not None:
        per_row = options["weight"][np.where(counted, labels, 0)]
    if s is not None:
        per_row = per_row * np.asarray(s, np.float64).reshape(-1)
    return total, float(per_row[counted].sum())


def _add_sums(*pairs):
    return tuple(map(math.fsum, zip(*pairs)))


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
        OpenMP threads of each block's kernel call (see ``evaluate``); pass 1 where Dask
        already runs a task per core.
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
    options = dict(from_logits=from_logits, weight=weight, ignore_index=ignore_index,
                   label_smoothing=label_smoothing, eps=eps, validate=validate,
                   n_threads=n_threads)

    def check(x0, t0, s0, axis):
        fastxent.cross_entropy(x0, t0, sample_weight=s0, reduction=reduction, axis=axis,
                               **options)

    x, t, s, axis = _align(input, target, sample_weight, axis, check)
    options["axis"] = axis
    if weight is not None:
        options["weight"] = np.asarray(weight, np.float64)
    dtype = _compute_dtype(x.dtype)

    if reduction == "none":
        x_index = tuple(range(x.ndim))
        rows_index = x_index[:axis] + x_index[axis + 1:]
        return da.blockwise(_block_losses, rows_index,
                            x, x_index, t, x_index if t.ndim == x.ndim else rows_index,
                            s, None if s is None else rows_index, options, None,
                            concatenate=True, meta=np.empty((0,) * len(rows_index), dtype))

    sums = [delayed(_block_sum, pure=True)(xb, tb, sb, options, reduction == "mean")
            for xb, tb, sb in _blocks(x, t, s, axis)]
    root = _tree(sums, _add_sums, functools.partial(_reduce_sums, reduction, dtype),
                 split_every)
    return da.from_delayed(root, shape=(), dtype=dtype, meta=np.empty((), dtype))
