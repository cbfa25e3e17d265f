"""Evaluate classifier outputs stored in ``.npy``/``.npz`` files, chunk by chunk.

:func:`evaluate_files` reads the logits (or probabilities) and the labels with positional
reads into one reused buffer per file (never memory-mapped: a file cut short while it is read
gives an error, not SIGBUS) and feeds them to a :class:`fastxent.Evaluator` ``chunk_rows`` rows
at a time, so the resident memory stays near one chunk whatever the size of the files. With
``checkpoint=`` the evaluator's state is saved atomically about once a second; a run that is
stopped and started again resumes there and ends with the same numbers, bit for bit, as a run
that was never stopped.

Every problem with a file (not a ``.npy``/``.npz``, truncated, wrong dtype or shape, lengths
that disagree, labels out of range, a checkpoint of another run) raises :class:`EvalFileError`,
a ``ValueError`` whose message names the file and the problem.
"""

import contextlib
import logging
import math
import os
import sys
import time

import numpy as np

from fastxent._api import validation as v
from fastxent._eval.arrayfiles import open_array
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
                   progress=None, n_threads=None, checkpoint_interval=CHECKPOINT_INTERVAL):
    """Evaluate a classifier's outputs stored in files, in chunks of rows.

    Parameters
    ----------
    logits_path : str or os.PathLike
        A ``.npy`` file, a ``.npz`` file holding a single array, or ``FILE.npz:NAME`` for the
        member ``NAME`` (``NAME.npy`` works too) of a ``.npz``. Logits (or probabilities with
        ``from_logits=False``) of shape ``(N, C)``, or ``(d0, ..., C)`` with the classes along
        the last axis. float32 and float64 are read as they are; float16, other floating
        dtypes and non-native byte orders are converted one chunk at a time. Fortran-ordered
        arrays are rejected.
    labels_path : str or os.PathLike
        Same syntax. Integer class labels of shape ``(N,)`` (the logits' shape without the
        class axis), any integer dtype, or float soft targets of the logits' shape.
    from_logits, topk, weight, ignore_index, eps : optional
        As for :func:`fastxent.evaluate`, checked (as :class:`fastxent.Evaluator` checks
        them) before any file is opened.
    chunk_rows : int, optional
        Rows per chunk; by default about 64 MiB of logits. The result depends on the chunking
        only through float64 rounding (about 1e-15 relative), and is the same, bit for bit,
        for the same ``chunk_rows``.
    checkpoint : str or os.PathLike, optional
        A JSON file for the state. If it exists and was written by a run over the same files
        (same resolved paths, sizes, modification times, shapes, dtypes) with the same options
        and chunking, the evaluation resumes from it; if it belongs to another run,
        :class:`EvalFileError` is raised (delete the file to start over). The state is saved
        atomically about every ``checkpoint_interval`` seconds and at the end, where it is
        marked complete and kept: running again returns the saved result without reading the
        data. Before any file is opened, a file is created and removed next to it to check
        that it can be saved there.
    progress : bool, optional
        Show a tqdm progress bar over rows on stderr; by default only when stderr is a
        terminal.
    n_threads : int, optional
        Threads for the kernels (results do not depend on it).
    checkpoint_interval : float, optional
        Seconds between two checkpoint saves (0: after every chunk).

    Returns
    -------
    fastxent.EvaluationResult
        The same metrics as :func:`fastxent.evaluate` on the loaded arrays.

    Raises
    ------
    EvalFileError
        A file is not a ``.npy``/``.npz``, is truncated, has an unsupported dtype or shape,
        the two files disagree, a label is out of range, or the checkpoint cannot be written
        where it is, is corrupt or belongs to another run. The message names the file.
    ValueError, TypeError
        An option is invalid (raised before any file is opened; the message names it).
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
                          ignore_index=ignore_index, eps=eps, n_threads=n_threads)
    options = evaluator.options             # checked and normalised; the axis is the last
    if chunk_rows is not None:
        chunk_rows = v.check_int(chunk_rows, "chunk_rows", low=1, must="be a positive int",
                                 type_error=ValueError)
    checkpoint_interval = v.check_real(checkpoint_interval, "checkpoint_interval", 0, math.inf,
                                       must="be a number of seconds >= 0")
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        problem = unwritable_reason(checkpoint)
        if problem is not None:
            raise EvalFileError(f"{checkpoint}: cannot save the checkpoint: {problem}")
    with contextlib.ExitStack() as stack:
        logits = stack.enter_context(open_array(logits_path))
        labels = stack.enter_context(open_array(labels_path))
        n_rows, n_classes, soft = _check_pair(logits, labels, options.weight)
        saved = None if checkpoint is None else load_checkpoint(checkpoint)
        if chunk_rows is None and saved is not None:
            chunk_rows = saved.get("chunk_rows")       # the run being resumed chose it
        if chunk_rows is None:
            chunk_rows = max(1, CHUNK_BYTES // (n_classes * logits.dtype.itemsize))
        run = {
            "inputs": {"logits": logits.identity(), "labels": labels.identity()},
            "options": recorded_options(options),
            "chunk_rows": chunk_rows,
            "rows": n_rows,
        }
        start = 0
        if saved is not None:
            check_same_run(checkpoint, saved, run, options)
            evaluator = saved_evaluator(checkpoint, saved, evaluator, n_rows, n_classes, soft)
            if saved["complete"]:
                logger.info("%s is complete: showing its saved result (delete it to "
                            "evaluate again)", checkpoint)
                return evaluator.result()
            start = saved["next_row"]
            logger.info("resuming from %s at row %d of %d", checkpoint, start, n_rows)
        _run_chunks(evaluator, logits, labels, start, n_rows, n_classes, soft, chunk_rows,
                    options.ignore_index, checkpoint, run, progress, checkpoint_interval)
    return evaluator.result()


def _run_chunks(evaluator, logits, labels, start, n_rows, n_classes, soft, chunk_rows,
                ignore_index, checkpoint, run, progress, checkpoint_interval):
    delay = float(os.environ.get(_CHUNK_DELAY_ENV) or 0.0)
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    bar = _progress_bar(progress, n_rows, start, logits.name)
    last_save = time.monotonic()
    try:
        for begin in range(start, n_rows, chunk_rows):
            end = min(begin + chunk_rows, n_rows)
            x = logits.read(begin, end).reshape(end - begin, n_classes)
            t = labels.read(begin, end)
            if soft:
                t = t.reshape(end - begin, n_classes)
            else:
                _check_labels(t, begin, n_classes, ignore_index, labels)
            try:
                evaluator.update(x, t)
            except ValueError as exc:
                raise EvalFileError(f"{_culprit(str(exc), logits, labels)}: in rows {begin} to "
                                    f"{end - 1}: {exc}") from None
            del x, t
            if bar is not None:
                bar.update(end - begin)
            if delay:
                time.sleep(delay)
            if checkpoint is not None and end < n_rows:
                now = time.monotonic()
                if now - last_save >= checkpoint_interval:
                    save_checkpoint(checkpoint, run, evaluator, end, complete=False)
                    last_save = now
        logits.verify()             # the CRC-32 of a .npz member, before any result is kept
        labels.verify()
        if checkpoint is not None:
            save_checkpoint(checkpoint, run, evaluator, n_rows, complete=True)
    finally:
        if bar is not None:
            bar.close()


def _culprit(message, logits, labels):
    """The file a kernel's message is about (it names ``input`` or ``target``)."""
    if message.startswith("target"):
        return labels.name
    if message.startswith("input"):
        return logits.name
    return f"{logits.name} and {labels.name}"


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
    rows_shape = shape[:-1]
    n_rows = math.prod(rows_shape)
    kind = labels.dtype.kind
    if kind in "iu":
        soft = False
        if labels.shape != rows_shape:
            if len(rows_shape) == 1 and len(labels.shape) == 1:
                raise EvalFileError(f"{labels.name}: {labels.shape[0]} rows, but "
                                    f"{logits.name} has {n_rows}")
            raise EvalFileError(
                f"{labels.name}: shape {labels.shape} does not fit {logits.name} of shape "
                f"{shape}: class labels must have shape {rows_shape}")
    elif kind == "f":
        soft = True
        if labels.shape != shape:
            hint = ""
            if labels.shape == rows_shape:
                hint = f" (class labels must have an integer dtype, not {labels.dtype})"
            raise EvalFileError(
                f"{labels.name}: {labels.dtype} soft targets of shape {labels.shape} do not "
                f"fit {logits.name}: they must have the logits' shape {shape}{hint}")
    else:
        raise EvalFileError(
            f"{labels.name}: dtype {labels.dtype}: labels must be integers (class labels) or "
            f"floats (soft targets)")
    if labels.fortran_order and len(labels.shape) > 1:
        raise EvalFileError(
            f"{labels.name}: the array is stored in Fortran order; rows must be contiguous: "
            f"save it with np.save(path, np.ascontiguousarray(a))")
    if weight is not None and len(weight) != n_classes:
        raise EvalFileError(f"weight has {len(weight)} entries, but {logits.name} has "
                            f"{n_classes} classes")
    logits.row_elements = n_classes
    labels.row_elements = n_classes if soft else 1
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
