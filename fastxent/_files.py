"""Evaluate classifier outputs stored in ``.npy``/``.npz`` files, chunk by chunk.

:func:`evaluate_files` reads the logits (or probabilities) and the labels memory-mapped, feeds
them to a :class:`fastxent.Evaluator` ``chunk_rows`` rows at a time and gives each processed
chunk's pages back to the operating system, so the resident memory stays near one chunk
whatever the size of the files. With ``checkpoint=`` the evaluator's state is saved atomically
about once a second; a run that is stopped and started again resumes there and ends with the
same numbers, bit for bit, as a run that was never stopped.

Every problem with a file (not a ``.npy``/``.npz``, truncated, wrong dtype or shape, lengths
that disagree, labels out of range, a checkpoint of another run) raises :class:`EvalFileError`,
a ``ValueError`` whose message names the file and the problem.
"""

import contextlib
import json
import logging
import math
import numbers
import os
import sys
import tempfile
import time

import numpy as np

from fastxent._arrayfiles import EvalFileError, open_array
from fastxent._config import __version__

#: Bytes of logits per chunk when ``chunk_rows`` is not given.
CHUNK_BYTES = 64 * 2**20
#: Seconds between two checkpoint saves (checked after each chunk).
CHECKPOINT_INTERVAL = 1.0
CHECKPOINT_FORMAT = "fastxent.evaluate_files checkpoint"
CHECKPOINT_VERSION = 1
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
        the last axis. float32 and float64 are read where they lie; float16, other floating
        dtypes and non-native byte orders are converted one chunk at a time. Fortran-ordered
        arrays are rejected.
    labels_path : str or os.PathLike
        Same syntax. Integer class labels of shape ``(N,)`` (the logits' shape without the
        class axis), any integer dtype, or float soft targets of the logits' shape.
    from_logits, topk, weight, ignore_index, eps : optional
        As for :func:`fastxent.evaluate`.
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
        data.
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
        the two files disagree, a label is out of range, or the checkpoint belongs to another
        run. The message names the file.
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
    from fastxent._evaluate import Evaluator

    evaluator = Evaluator(from_logits=from_logits, topk=topk, weight=weight,
                          ignore_index=ignore_index, eps=eps, n_threads=n_threads)
    options = {
        "from_logits": bool(from_logits),
        "topk": sorted({int(k) for k in topk}),
        "weight": None if weight is None else [float(w) for w in np.ravel(
            np.asarray(weight, dtype=np.float64))],
        "ignore_index": _plain_number(ignore_index),
        "eps": None if eps is None else float(eps),
    }
    if chunk_rows is not None:
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral) \
                or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        chunk_rows = int(chunk_rows)
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        directory = os.path.dirname(os.path.abspath(checkpoint))
        if not os.path.isdir(directory):
            raise EvalFileError(f"{checkpoint}: the directory {directory} does not exist")
    with contextlib.ExitStack() as stack:
        logits = stack.enter_context(open_array(logits_path))
        labels = stack.enter_context(open_array(labels_path))
        n_rows, n_classes, soft = _check_pair(logits, labels, options["weight"])
        saved = None if checkpoint is None else _load_checkpoint(checkpoint)
        if chunk_rows is None and saved is not None:
            chunk_rows = saved.get("chunk_rows")       # the run being resumed chose it
        if chunk_rows is None:
            chunk_rows = max(1, CHUNK_BYTES // (n_classes * logits.dtype.itemsize))
        run = {
            "inputs": {"logits": logits.identity(), "labels": labels.identity()},
            "options": options,
            "chunk_rows": chunk_rows,
            "rows": n_rows,
        }
        start = 0
        if checkpoint is not None:
            if saved is not None:
                _check_same_run(checkpoint, saved, run)
                next_row = saved["next_row"]
                if (not isinstance(next_row, int) or not 0 <= next_row <= n_rows
                        or (next_row % chunk_rows and next_row != n_rows)):
                    raise EvalFileError(f"{checkpoint}: corrupt checkpoint (next_row "
                                        f"{next_row!r}); delete it to start over")
                try:
                    evaluator = Evaluator.from_dict(saved["evaluator"], n_threads=n_threads)
                except ValueError as exc:
                    raise EvalFileError(f"{checkpoint}: corrupt checkpoint ({exc}); delete it "
                                        f"to start over") from None
                if saved["complete"]:
                    logger.info("%s is complete: showing its saved result (delete it to "
                                "evaluate again)", checkpoint)
                    return evaluator.result()
                start = next_row
                logger.info("resuming from %s at row %d of %d", checkpoint, start, n_rows)
        _run_chunks(evaluator, logits, labels, start, n_rows, n_classes, soft, chunk_rows,
                    options["ignore_index"], checkpoint, run, progress, checkpoint_interval)
    return evaluator.result()


def _plain_number(value):
    """An int or float that survives JSON unchanged (None stays None)."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)


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
            logits.release(begin, end)
            labels.release(begin, end)
            if bar is not None:
                bar.update(end - begin)
            if delay:
                time.sleep(delay)
            if checkpoint is not None and end < n_rows:
                now = time.monotonic()
                if now - last_save >= checkpoint_interval:
                    _save_checkpoint(checkpoint, run, evaluator, end, complete=False)
                    last_save = now
        if checkpoint is not None:
            _save_checkpoint(checkpoint, run, evaluator, n_rows, complete=True)
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


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _load_checkpoint(path):
    """The saved state, or None when `path` does not exist."""
    try:
        with open(path, encoding="utf-8") as fp:
            saved = json.load(fp)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"{path}: not a fastxent eval checkpoint (invalid JSON: {exc}); "
                            f"delete it to start over") from None
    if (not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT
            or saved.get("version") != CHECKPOINT_VERSION
            or not {"complete", "next_row", "evaluator", "chunk_rows"} <= saved.keys()
            or not isinstance(saved["chunk_rows"], int) or saved["chunk_rows"] < 1):
        raise EvalFileError(f"{path}: not a fastxent eval checkpoint (version "
                            f"{CHECKPOINT_VERSION}); delete it to start over")
    return saved


def _check_same_run(path, saved, run):
    """Raise EvalFileError when the checkpoint was written by a different run."""
    differences = []
    for role in ("logits", "labels"):
        old, new = saved.get("inputs", {}).get(role, {}), run["inputs"][role]
        for key, value in new.items():
            if old.get(key) != value:
                differences.append(f"{role} {key} was {old.get(key)!r}, now {value!r}")
    for key, value in run["options"].items():
        old = saved.get("options", {}).get(key)
        if old != value:
            differences.append(f"option {key} was {old!r}, now {value!r}")
    if saved.get("chunk_rows") != run["chunk_rows"]:
        differences.append(f"chunk_rows was {saved.get('chunk_rows')!r}, now "
                           f"{run['chunk_rows']!r}")
    if differences:
        raise EvalFileError(f"{path}: checkpoint of another run ({'; '.join(differences)}); "
                            f"delete it to start over, or run with the same files and options")


def _save_checkpoint(path, run, evaluator, next_row, complete):
    """Write the state to `path` atomically: a temporary file, fsync, then os.replace."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "fastxent": __version__,
        "complete": complete,
        "next_row": next_row,
        **run,
        "evaluator": evaluator.to_dict(),
    }
    text = json.dumps(state)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fp:
            fp.write(text)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
