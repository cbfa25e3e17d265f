"""Evaluate classifier outputs stored in ``.npy``/``.npz`` files, chunk by chunk.

:func:`evaluate_files` reads the logits (or probabilities) and the labels with positional
reads into one reused buffer per file (never memory-mapped: a file cut short while it is read
gives an error, not SIGBUS) and feeds them to a :class:`fastxent.Evaluator` ``chunk_rows`` rows
at a time, so the resident memory stays near one chunk whatever the size of the files. With
``checkpoint=`` the evaluator's state is saved atomically about once a second; a run that is
stopped and started again resumes there and ends with the same numbers, bit for bit, as a run
that was never stopped.

With ``linear_weight=`` (and ``linear_bias=``) the first file holds a model's hidden states
instead of logits: each chunk of rows goes through :meth:`fastxent.Evaluator.update_linear`,
which computes its logits ``H @ W.T + b``; the weight and bias are read whole, once.

Every problem with a file (not a ``.npy``/``.npz``, truncated, wrong dtype or shape, lengths
that disagree, labels out of range, a checkpoint of another run) raises :class:`EvalFileError`,
a ``ValueError`` whose message names the file and the problem.
"""

import contextlib
import hashlib
import logging
import math
import os
import sys
import time

import numpy as np

from fastxent._api import validation as v
from fastxent._api.linear import chunk_rows_for
from fastxent._eval.arrayfiles import open_array, whole_array
from fastxent._eval.checkpoint import (
    check_same_run,
    load_checkpoint,
    recorded_options,
    save_checkpoint,
    saved_evaluator,
    unwritable_reason,
)
from fastxent._eval.errors import EvalFileError

#: Bytes of logits per chunk when ``chunk_rows`` is not given.
CHUNK_BYTES = 64 * 2**20
#: Seconds between two checkpoint saves (checked after each chunk).
CHECKPOINT_INTERVAL = 1.0
# Test-only hook: sleep this many seconds after each chunk, so that a test can kill a run
# deterministically in the middle. Not part of the API.
_CHUNK_DELAY_ENV = "FASTXENT_EVAL_CHUNK_DELAY"


logger = logging.getLogger("fastxent.eval")


def evaluate_files(logits_path, labels_path, *, from_logits=True, topk=(1, 5), weight=None,
                   ignore_index=None, eps=None, chunk_rows=None, checkpoint=None,
                   progress=None, n_threads=None, checkpoint_interval=CHECKPOINT_INTERVAL,
                   linear_weight=None, linear_bias=None, groups=None, per_class=False,
                   confusion=False, prior=None):
    """Evaluate a classifier's outputs stored in files, in chunks of rows.

    Parameters
    ----------
    logits_path : str or os.PathLike
        A ``.npy`` file, a ``.npz`` file holding a single array, or ``FILE.npz:NAME`` for the
        member ``NAME`` (``NAME.npy`` works too) of a ``.npz``. Logits (or probabilities with
        ``from_logits=False``) of shape ``(N, C)``, or ``(d0, ..., C)`` with the classes along
        the last axis. float32 and float64 are read as they are; float16, other floating
        dtypes and non-native byte orders are converted one chunk at a time. Fortran-ordered
        arrays are rejected. With `linear_weight`: hidden states of shape ``(N, d)`` (or
        ``(d0, ..., d)``), read the same way.
    labels_path : str or os.PathLike
        Same syntax. Integer class labels of shape ``(N,)`` (the logits' shape without the
        class axis), any integer dtype, or float soft targets of the logits' shape.
    from_logits, topk, weight, ignore_index, eps, per_class, confusion, prior : optional
        As for :func:`fastxent.evaluate`, checked (as :class:`fastxent.Evaluator` checks
        them) before any file is opened.
    chunk_rows : int, optional
        Rows per chunk; by default about 64 MiB of logits (with `linear_weight`, the chunk
        of :func:`fastxent.linear_cross_entropy`, from V and the CPU's cache; each chunk's
        logits are computed at once). The result depends on the chunking only through
        float64 rounding (about 1e-15 relative), and is the same, bit for bit, for the same
        ``chunk_rows`` (with `linear_weight`, and the same `n_threads`: BLAS's rounding of the
        logits can depend on its thread count).
    checkpoint : str or os.PathLike, optional
        A JSON file for the state. If it exists and was written by a run over the same files
        (same resolved paths, sizes, modification times, shapes, dtypes, sampled contents;
        the weight and bias files included, with a digest of all their values) with the same
        options and chunking, the evaluation resumes from it; if it belongs to another run,
        :class:`EvalFileError` is raised (delete the file to start over). The state is saved
        atomically about every ``checkpoint_interval`` seconds and at the end, where it is
        marked complete and kept: running again returns the saved result without reading the
        data. Before any file is opened, a file is created and removed next to it to check
        that it can be saved there.
    progress : bool, optional
        Show a tqdm progress bar over rows on stderr; by default only when stderr is a
        terminal.
    n_threads : int, optional
        Threads for the kernels (results do not depend on it). With `linear_weight`, BLAS's
        threads for the GEMMs (the kernel runs on the calling thread), and results agree
        across thread counts to rounding only.
    checkpoint_interval : float, optional
        Seconds between two checkpoint saves (0: after every chunk).
    linear_weight : str or os.PathLike, optional
        A file (same syntax) holding a linear layer's weight W of shape ``(V, d)``: the first
        file then holds hidden states H, and the logits ``H @ W.T + b`` are computed one
        chunk of rows at a time (:meth:`fastxent.Evaluator.update_linear`), never all at
        once. W (and b) must be float32 or float64 and have H's computation dtype (float32
        with float32 hidden states; float64 with float64 or other floating ones): another
        dtype, or a mismatch, is an error naming the files. W is read whole, once, after the
        checks (a checkpoint records a digest of all its values). Only a path is taken, so
        that a checkpoint can recognise the weight (for arrays in memory use
        :func:`fastxent.evaluate_linear` or :class:`fastxent.Evaluator`). Needs
        ``from_logits=True``.
    linear_bias : str or os.PathLike, optional
        A file holding the layer's bias b of shape ``(V,)``, W's dtype; needs `linear_weight`.
    groups : str or os.PathLike, optional
        A file (same syntax) holding a group id per row: integers of the labels' shape (the
        rows' shape), in [0, 2**24 - 1], read chunk by chunk with the rows (``groups=`` of
        :func:`fastxent.evaluate`).

    Returns
    -------
    fastxent.EvaluationResult
        The same metrics as :func:`fastxent.evaluate` on the loaded arrays (with
        `linear_weight`, as :func:`fastxent.evaluate_linear`).

    Raises
    ------
    EvalFileError
        A file is not a ``.npy``/``.npz``, is truncated, has an unsupported dtype or shape,
        the two files disagree, a label is out of range, or the checkpoint cannot be written
        where it is, is corrupt or belongs to another run. The message names the file.
    ValueError, TypeError
        An option is invalid, or two options do not go together (raised before any file is
        opened; the message names them).
    FileNotFoundError
        An input file does not exist.

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastxent
    >>> folder = tempfile.mkdtemp()
    >>> logits, labels = os.path.join(folder, "logits.npy"), os.path.join(folder, "labels.npy")
    >>> np.save(logits, np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    >>> np.save(labels, np.array([0, 0]))
    >>> result = fastxent.evaluate_files(logits, labels, topk=(1,))
    >>> result.accuracy, result.count
    (0.5, 2)
    """
    from fastxent._eval.evaluate import Evaluator

    evaluator = Evaluator(from_logits=from_logits, topk=topk, weight=weight,
                          ignore_index=ignore_index, eps=eps, n_threads=n_threads,
                          per_class=per_class, confusion=confusion, prior=prior)
    _check_linear_options(linear_weight, linear_bias, evaluator.options)
    return _run_files(evaluator, {"logits": logits_path}, labels_path, groups, chunk_rows,
                      checkpoint, progress, checkpoint_interval, linear_weight, linear_bias)


def compare_files(logits_a_path, logits_b_path, labels_path, *, from_logits=True, topk=(1, 5),
                  weight=None, ignore_index=None, eps=None, chunk_rows=None, checkpoint=None,
                  progress=None, n_threads=None, checkpoint_interval=CHECKPOINT_INTERVAL,
                  groups=None, per_class=False, prior=None):
    """Compare two models whose outputs for the same rows are stored in files, chunk by chunk.

    What :func:`evaluate_files` is to :func:`fastxent.evaluate`, this is to
    :func:`fastxent.compare`: the two files of logits (or probabilities) and the labels are
    read ``chunk_rows`` rows at a time, with the same checks, checkpoints and resumption.

    Parameters
    ----------
    logits_a_path, logits_b_path : str or os.PathLike
        The two models' logits (or probabilities), as :func:`evaluate_files` takes them: the
        same shape, each float32 or float64 (they may differ).
    labels_path : str or os.PathLike
        Class labels or soft targets of the rows.
    from_logits, topk, weight, ignore_index, eps, per_class, prior : optional
        As for :func:`fastxent.compare`, checked before any file is opened.
    chunk_rows, checkpoint, progress, n_threads, checkpoint_interval, groups : optional
        As for :func:`evaluate_files` (by default a chunk holds about 32 MiB of each model's
        logits).

    Returns
    -------
    fastxent.ComparisonResult

    Raises
    ------
    EvalFileError, ValueError, TypeError, FileNotFoundError
        As :func:`evaluate_files` raises them; also when the two files' shapes differ.

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastxent
    >>> folder = tempfile.mkdtemp()
    >>> a, b = os.path.join(folder, "a.npy"), os.path.join(folder, "b.npy")
    >>> labels = os.path.join(folder, "labels.npy")
    >>> np.save(a, np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    >>> np.save(b, np.zeros((2, 2), dtype=np.float32))
    >>> np.save(labels, np.array([0, 1]))
    >>> r = fastxent.compare_files(a, b, labels, topk=(1,))
    >>> r.a.accuracy, r.b.accuracy, r.count
    (1.0, 0.5, 2)
    """
    from fastxent._eval.compare import Comparator

    comparator = Comparator(from_logits=from_logits, topk=topk, weight=weight,
                            ignore_index=ignore_index, eps=eps, n_threads=n_threads,
                            per_class=per_class, prior=prior)
    return _run_files(comparator, {"logits_a": logits_a_path, "logits_b": logits_b_path},
                      labels_path, groups, chunk_rows, checkpoint, progress,
                      checkpoint_interval)


def _run_files(accumulator, row_paths, labels_path, groups_path, chunk_rows, checkpoint,
               progress, checkpoint_interval, linear_weight=None, linear_bias=None):
    """The run of :func:`evaluate_files` and :func:`compare_files`: check the options and
    files, resume from the checkpoint, feed the chunks to `accumulator` (an Evaluator or a
    Comparator) and return its result.

    `row_paths` maps the checkpoint's roles of the files of rows (``logits``, or
    ``logits_a`` and ``logits_b``) to their paths.
    """
    options = accumulator.options           # checked and normalised; the axis is the last
    if chunk_rows is not None:
        chunk_rows = v.check_int(chunk_rows, "chunk_rows", low=1, must="be a positive int",
                                 type_error=ValueError)
    checkpoint_interval = v.check_real(checkpoint_interval, "checkpoint_interval", 0, math.inf,
                                       must="be a number of seconds >= 0")
    if groups_path is not None and not isinstance(groups_path, (str, os.PathLike)):
        raise TypeError(f"groups must be the path of a .npy/.npz file, got "
                        f"{type(groups_path).__name__} (for arrays in memory use "
                        f"fastxent.evaluate or an Evaluator)")
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        problem = unwritable_reason(checkpoint)
        if problem is not None:
            raise EvalFileError(f"{checkpoint}: cannot save the checkpoint: {problem}")
    with contextlib.ExitStack() as stack:
        rows = {role: stack.enter_context(open_array(path)) for role, path in row_paths.items()}
        first = next(iter(rows.values()))
        labels = stack.enter_context(open_array(labels_path))
        layer = None
        if linear_weight is None:
            for source in rows.values():
                n_rows, n_classes, soft = _check_pair(source, labels, options.weight)
            _check_same_shapes(rows.values())
        else:
            layer = _LinearLayer(
                stack.enter_context(open_array(linear_weight)),
                None if linear_bias is None else stack.enter_context(open_array(linear_bias)))
            n_rows, n_classes, soft = _check_linear(first, labels, layer, options.weight)
        groups = None
        if groups_path is not None:
            groups = stack.enter_context(open_array(groups_path))
            _check_groups(groups, labels, n_classes if soft else None)
        saved = None if checkpoint is None else load_checkpoint(checkpoint)
        if chunk_rows is None and saved is not None:
            chunk_rows = saved.get("chunk_rows")       # the run being resumed chose it
        if chunk_rows is None and layer is None:
            chunk_rows = max(1, CHUNK_BYTES // (n_classes * first.dtype.itemsize * len(rows)))
        elif chunk_rows is None:
            chunk_rows = chunk_rows_for(n_classes, layer.dtype.itemsize)
        if layer is None:
            inputs = {role: source.identity() for role, source in rows.items()}
            inputs["labels"] = labels.identity()
        else:
            inputs = {"hidden": first.identity(), "labels": labels.identity(),
                      **layer.identities(with_contents=checkpoint is not None)}
        inputs["groups"] = None if groups is None else groups.identity()
        run = {
            "inputs": inputs,
            "options": recorded_options(options),
            "chunk_rows": chunk_rows,
            "rows": n_rows,
        }
        start = 0
        if saved is not None:
            check_same_run(checkpoint, saved, run, options)
            accumulator = saved_evaluator(checkpoint, saved, accumulator, n_rows, n_classes,
                                          soft)
            if saved["complete"]:
                logger.info("%s is complete: showing its saved result (delete it to "
                            "evaluate again)", checkpoint)
                return accumulator.result()
            start = saved["next_row"]
            logger.info("resuming from %s at row %d of %d", checkpoint, start, n_rows)
        sources = dict(zip(("input", "input_b")[:len(rows)], rows.values(), strict=True))
        sources["target"] = labels
        if groups is not None:
            sources["groups"] = groups
        if layer is not None:
            update = layer.updater(accumulator, chunk_rows)
            sources.update(layer.sources())
        elif len(rows) == 2:
            def update(xs, t, g):
                accumulator.update(xs[0], xs[1], t, groups=g)
        else:
            def update(xs, t, g):
                accumulator.update(xs[0], t, groups=g)
        _run_chunks(update, sources, start, n_rows, n_classes, soft, chunk_rows,
                    options.ignore_index, checkpoint, run, accumulator, progress,
                    checkpoint_interval)
    return accumulator.result()


def _check_same_shapes(sources):
    """Raise EvalFileError when two files of rows (two models' logits) differ in shape."""
    first, *others = sources
    for other in others:
        if other.shape != first.shape:
            raise EvalFileError(f"{other.name}: shape {other.shape}, but {first.name} has "
                                f"shape {first.shape}: the two models' outputs must be for "
                                f"the same rows and classes")


def _check_groups(groups, labels, soft_classes):
    """Raise EvalFileError unless `groups` holds integer ids of the labels' rows."""
    rows_shape = labels.shape if soft_classes is None else labels.shape[:-1]
    if groups.dtype.kind not in "iu":
        raise EvalFileError(f"{groups.name}: dtype {groups.dtype}: group ids must be integers")
    if groups.shape != rows_shape:
        raise EvalFileError(f"{groups.name}: shape {groups.shape}, but {labels.name} has "
                            f"rows of shape {rows_shape}: one group id per row")
    if groups.fortran_order and len(groups.shape) > 1:
        raise EvalFileError(
            f"{groups.name}: the array is stored in Fortran order; rows must be contiguous: "
            f"save it with np.save(path, np.ascontiguousarray(a))")
    groups.row_elements = 1


def _check_linear_options(linear_weight, linear_bias, options):
    """Raise TypeError for a linear layer's weight or bias that is not a path, ValueError for
    ones that do not go with the other options."""
    for name, path in (("linear_weight", linear_weight), ("linear_bias", linear_bias)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{name} must be the path of a .npy/.npz file, got "
                            f"{type(path).__name__} (for arrays in memory use "
                            f"fastxent.evaluate_linear or Evaluator.update_linear)")
    if linear_bias is not None and linear_weight is None:
        raise ValueError("linear_bias needs linear_weight (the bias of a linear layer whose "
                         "weight is not given)")
    if linear_weight is not None and not options.from_logits:
        raise ValueError("from_logits=False cannot be used with linear_weight: the linear "
                         "layer's outputs H @ W.T + b are logits, not probabilities")


def _run_chunks(update, sources, start, n_rows, n_classes, soft, chunk_rows, ignore_index,
                checkpoint, run, evaluator, progress, checkpoint_interval):
    """Feed the rows from `start` on to ``update(xs, t, g)``, a chunk at a time, saving
    `evaluator` to the checkpoint as it goes.

    `sources` maps the names the kernels' messages start with (``input``, ``input_b``,
    ``target``, ``groups``, ``linear_weight``, ``linear_bias``) to the files they mean;
    ``sources["input"]`` (and ``sources["input_b"]``) hold the rows that are fed (logits or
    hidden states) as the list `xs`, ``sources["target"]`` their labels `t`,
    ``sources["groups"]`` (if any) their group ids `g` (else None).
    """
    rows_in, labels = sources["input"], sources["target"]
    row_files = [sources[name] for name in ("input", "input_b") if name in sources]
    groups = sources.get("groups")
    delay = float(os.environ.get(_CHUNK_DELAY_ENV) or 0.0)
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    bar = _progress_bar(progress, n_rows, start, rows_in.name)
    last_save = time.monotonic()
    try:
        for begin in range(start, n_rows, chunk_rows):
            end = min(begin + chunk_rows, n_rows)
            xs = [source.read(begin, end).reshape(end - begin, source.row_elements)
                  for source in row_files]
            t = labels.read(begin, end)
            g = None if groups is None else groups.read(begin, end)
            if soft:
                t = t.reshape(end - begin, n_classes)
            else:
                _check_labels(t, begin, n_classes, ignore_index, labels)
            try:
                update(xs, t, g)
            except ValueError as exc:
                raise EvalFileError(f"{_culprit(str(exc), sources)}: in rows {begin} to "
                                    f"{end - 1}: {exc}") from None
            del xs, t, g
            if bar is not None:
                bar.update(end - begin)
            if delay:
                time.sleep(delay)
            if checkpoint is not None and end < n_rows:
                now = time.monotonic()
                if now - last_save >= checkpoint_interval:
                    save_checkpoint(checkpoint, run, evaluator, end, complete=False)
                    last_save = now
        for source in (*row_files, labels, *([groups] if groups is not None else [])):
            source.verify()         # the CRC-32 of a .npz member, before any result is kept
        if checkpoint is not None:
            save_checkpoint(checkpoint, run, evaluator, n_rows, complete=True)
    finally:
        if bar is not None:
            bar.close()


def _culprit(message, sources):
    """The file a kernel's message is about (it starts with the argument's name: ``input``,
    ``target``, ``linear_weight``, ``linear_bias``), or every file when it names none."""
    for argument, source in sources.items():
        if message.startswith(argument):
            return source.name
    return " and ".join(source.name for source in sources.values())


def _progress_bar(show, total, initial, name):
    if not show:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="row", unit_scale=True, desc=name,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


# ---------------------------------------------------------------------------------------------
# Checking the two arrays against each other


def _check_pair(logits, labels, weight):
    """Return (rows, classes, soft) or raise EvalFileError naming the file at fault."""
    shape, dtype = logits.shape, logits.dtype
    if len(shape) < 2:
        raise EvalFileError(
            f"{logits.name}: shape {shape}: logits must have a class axis, shape (N, C) "
            f"(or (d0, ..., C) with the classes last)")
    if dtype.kind != "f":
        raise EvalFileError(
            f"{logits.name}: dtype {dtype}: logits and probabilities must be floating point "
            f"(float32 or float64)")
    n_classes = shape[-1]
    if n_classes == 0:
        raise EvalFileError(f"{logits.name}: shape {shape} has no classes (C = 0)")
    if logits.fortran_order:
        raise EvalFileError(
            f"{logits.name}: the array is stored in Fortran order; rows must be contiguous: "
            f"save it with np.save(path, np.ascontiguousarray(a))")
    n_rows, soft = _check_targets(labels, logits.name, shape, logits.name, weight)
    logits.row_elements = n_classes
    return n_rows, n_classes, soft


def _check_targets(labels, rows_name, shape, classes_name, weight):
    """Check the labels (or soft targets) of rows whose logits have `shape` (classes last);
    return (rows, soft) or raise EvalFileError naming the file at fault.

    `rows_name` is the file that holds the rows, `classes_name` the one whose shape says the
    number of classes (the logits, or a linear layer's weight).
    """
    rows_shape, n_classes = shape[:-1], shape[-1]
    n_rows = math.prod(rows_shape)
    kind = labels.dtype.kind
    if kind in "iu":
        soft = False
        if labels.shape != rows_shape:
            if len(rows_shape) == 1 and len(labels.shape) == 1:
                raise EvalFileError(f"{labels.name}: {labels.shape[0]} rows, but "
                                    f"{rows_name} has {n_rows}")
            raise EvalFileError(
                f"{labels.name}: shape {labels.shape} does not fit {rows_name} of shape "
                f"{shape}: class labels must have shape {rows_shape}")
    elif kind == "f":
        soft = True
        if labels.shape != shape:
            hint = ""
            if labels.shape == rows_shape:
                hint = f" (class labels must have an integer dtype, not {labels.dtype})"
            raise EvalFileError(
                f"{labels.name}: {labels.dtype} soft targets of shape {labels.shape} do not "
                f"fit {rows_name}: they must have the logits' shape {shape}{hint}")
    else:
        raise EvalFileError(
            f"{labels.name}: dtype {labels.dtype}: labels must be integers (class labels) or "
            f"floats (soft targets)")
    if labels.fortran_order and len(labels.shape) > 1:
        raise EvalFileError(
            f"{labels.name}: the array is stored in Fortran order; rows must be contiguous: "
            f"save it with np.save(path, np.ascontiguousarray(a))")
    if weight is not None and len(weight) != n_classes:
        raise EvalFileError(f"weight has {len(weight)} entries, but {classes_name} has "
                            f"{n_classes} classes")
    labels.row_elements = n_classes if soft else 1
    return n_rows, soft


class _LinearLayer:
    """The weight file (and bias file, or None) of a linear evaluation, checked from their
    headers and read whole, once: when rows are evaluated, or when a checkpoint needs to know
    their contents."""

    def __init__(self, weight, bias):
        self.weight = weight
        self.bias = bias
        self.dtype = v.computation_dtype(weight.dtype)
        self._arrays = None

    def _read(self):
        """The weight and bias as the kernels take them (the computation dtype, C order),
        read on the first call."""
        if self._arrays is None:
            self._arrays = tuple(
                None if source is None
                else np.ascontiguousarray(whole_array(source), dtype=self.dtype)
                for source in (self.weight, self.bias))
        return self._arrays

    def identities(self, with_contents):
        """What a checkpoint records of the two files (the bias None when there is none).

        With `with_contents`, each also records ``contents``, a BLAKE2b digest of all its
        values (the files are read for it): a rewrite that keeps the size, the modification
        time and the sampled fingerprint is still recognised, since W is read whole anyway.
        """
        identities = {}
        arrays = self._read() if with_contents else (None, None)
        for role, source, array in zip(("linear_weight", "linear_bias"),
                                       (self.weight, self.bias), arrays, strict=True):
            identities[role] = None if source is None else source.identity()
            if source is not None and with_contents:
                identities[role]["contents"] = hashlib.blake2b(
                    array.data, digest_size=16).hexdigest()
        return identities

    def sources(self):
        """The files by the names the kernels' messages give them."""
        named = {"linear_weight": self.weight}
        if self.bias is not None:
            named["linear_bias"] = self.bias
        return named

    def updater(self, evaluator, chunk_rows):
        """Read the weight and bias (if not read yet) and return ``update(xs, target,
        groups)``, which adds a chunk of hidden states ``xs[0]`` to `evaluator`, computing
        their logits at once (`chunk_rows` rows)."""
        weight, bias = self._read()

        def update(xs, target, groups):
            evaluator.update_linear(xs[0], weight, target, linear_bias=bias, groups=groups,
                                    chunk_rows=chunk_rows)
        return update


def _check_linear(hidden, labels, layer, weight):
    """:func:`_check_pair` for hidden states, a linear layer's weight and bias, and labels:
    return (rows, classes, soft) or raise EvalFileError naming the files at fault."""
    shape, matrix, bias = hidden.shape, layer.weight, layer.bias
    if len(shape) < 2:
        raise EvalFileError(
            f"{hidden.name}: shape {shape}: hidden states must have shape (N, d) (or "
            f"(d0, ..., d) with the features last)")
    if hidden.dtype.kind != "f":
        raise EvalFileError(f"{hidden.name}: dtype {hidden.dtype}: hidden states must be "
                            f"floating point (float32 or float64)")
    if hidden.fortran_order:
        raise EvalFileError(
            f"{hidden.name}: the array is stored in Fortran order; rows must be contiguous: "
            f"save it with np.save(path, np.ascontiguousarray(a))")
    n_features = shape[-1]
    if len(matrix.shape) != 2 or matrix.shape[1] != n_features:
        raise EvalFileError(
            f"{matrix.name}: shape {matrix.shape}: the linear layer's weight must have shape "
            f"(V, {n_features}) for {hidden.name} of shape {shape} (d = {n_features})")
    n_classes = matrix.shape[0]
    if n_classes == 0:
        raise EvalFileError(f"{matrix.name}: shape {matrix.shape} has no rows: there are no "
                            f"classes (V = 0)")
    for source in (matrix, bias):
        if source is None:
            continue
        if source.dtype.kind != "f" or source.dtype.itemsize not in (4, 8):
            raise EvalFileError(f"{source.name}: dtype {source.dtype}: a linear layer's "
                                f"weight and bias must be float32 or float64 (a weight matrix "
                                f"is never converted to another precision silently)")
        if v.computation_dtype(source.dtype) != v.computation_dtype(hidden.dtype):
            raise EvalFileError(
                f"{source.name} is {source.dtype} but {hidden.name} is {hidden.dtype}: the "
                f"hidden states and the linear layer must both be float32 or both float64 "
                f"(fastxent does not convert a weight matrix silently; save one of them with "
                f".astype(...))")
    if bias is not None and bias.shape != (n_classes,):
        raise EvalFileError(
            f"{bias.name}: shape {bias.shape}: the linear layer's bias must have shape "
            f"({n_classes},) for {matrix.name} of shape {matrix.shape} (V = {n_classes})")
    n_rows, soft = _check_targets(labels, hidden.name, shape[:-1] + (n_classes,),
                                  matrix.name, weight)
    hidden.row_elements = n_features
    return n_rows, n_classes, soft


def _check_labels(t, begin, n_classes, ignore_index, source):
    """Raise EvalFileError naming the first label outside [0, C) that is not ignore_index."""
    if t.size == 0:
        return
    if t.min() >= 0 and t.max() < n_classes:
        return
    bad = (t < 0) | (t >= n_classes)
    if ignore_index is not None:
        bad &= t != ignore_index
    if not bad.any():
        return
    first = int(np.argmax(bad))
    position = begin + first
    if len(source.shape) == 1:
        where = f"row {position}"
    else:
        where = f"index {tuple(int(i) for i in np.unravel_index(position, source.shape))}"
    also = "" if ignore_index is None else f" and is not ignore_index {ignore_index}"
    raise EvalFileError(f"{source.name}: label {t[first]} at {where} is out of range "
                        f"[0, {n_classes}){also}")
