"""The checkpoints of ``evaluate_files`` and ``compare_files``: a JSON file saved atomically,
resumed if it is of the same run.

A checkpoint records the run (the inputs' identities, the options, the chunking and the number
of rows), the next row to read, whether the run is complete, and the Evaluator's (or for
``compare_files`` the Comparator's) state. The inputs are the logits and labels, for a linear
evaluation the hidden states, the labels and the layer's weight and bias (null without one),
for a comparison both models' logits and the labels; and the group ids (null without them).
A run resumes from it only when every recorded field matches; otherwise, and for a checkpoint
that is damaged, :class:`EvalFileError` says why.
"""

import contextlib
import json
import os
import tempfile

from fastxent._api.options import EvaluationOptions
from fastxent._core.config import __version__
from fastxent._eval.errors import EvalFileError
from fastxent._eval.jsonvalues import typed_field

CHECKPOINT_FORMAT = "fastxent.evaluate_files checkpoint"
# Version 2: inputs carry a content fingerprint, non-finite sums are strict JSON. Version 3: the
# options per_class, confusion and prior, group ids among the inputs, the evaluator's state of
# version 2 (intervals and tables), comparisons.
CHECKPOINT_VERSION = 3

# Every field of a checkpoint: (type, what it must be). bool is not taken as an int.
_CHECKPOINT_FIELDS = {
    "fastxent": (str, "a version string"),
    "complete": (bool, "true or false"),
    "next_row": (int, "a row index"),
    "rows": (int, "a number of rows"),
    "chunk_rows": (int, "a positive int"),
    "inputs": (dict, "an object with logits and labels"),
    "options": (dict, "an object"),
    "evaluator": (dict, "an Evaluator state"),
}


def unwritable_reason(path):
    """Why a file cannot be written at `path` as checkpoints are, or None when it can.

    A checkpoint is written to a new file in the directory of `path`, then renamed over it.
    This creates and removes such a file to find out, so that permission bits, read-only
    mounts and pseudo file systems (where even root cannot create a file) all give the
    answer the real save would give.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str or None
        The reason, as a phrase, or None.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"the directory {directory} does not exist"
    if os.path.lexists(path):
        if not os.path.isfile(path):
            return "it exists and is not a regular file"
        if not os.access(path, os.W_OK):
            return "the file is read-only"
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                     dir=directory)
    except OSError as exc:
        return f"cannot create a file in {directory} ({exc.strerror or exc})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def _corrupt(path, reason):
    return EvalFileError(f"{path}: corrupt checkpoint ({reason}); delete it to start over")


def recorded_options(options):
    """The options a checkpoint records: those of ``options.to_dict()`` but the axis (the
    classes are always the files' last axis)."""
    return {name: value for name, value in options.to_dict().items() if name != "axis"}


def load_checkpoint(path):
    """The saved state, or None when `path` does not exist; every field's type is checked."""
    try:
        with open(path, encoding="utf-8") as fp:
            saved = json.load(fp)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvalFileError(f"{path}: not a fastxent eval checkpoint (invalid JSON: {exc}); "
                            f"delete it to start over") from None
    except OSError as exc:
        raise EvalFileError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") \
            from None
    if (not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT
            or type(saved.get("version")) is not int):
        raise EvalFileError(f"{path}: not a fastxent eval checkpoint (version "
                            f"{CHECKPOINT_VERSION}); delete it to start over")
    if saved["version"] != CHECKPOINT_VERSION:
        raise EvalFileError(f"{path}: a checkpoint of format version {saved['version']}, "
                            f"written by another fastxent release (this one reads version "
                            f"{CHECKPOINT_VERSION}); delete it to start over")
    for key, (kind, description) in _CHECKPOINT_FIELDS.items():
        if key not in saved:
            raise _corrupt(path, f"no {key}")
        try:
            typed_field(saved, key, kind, description)
        except ValueError as exc:
            raise _corrupt(path, exc) from None
    if saved["next_row"] < 0 or saved["rows"] < 0 or saved["chunk_rows"] < 1:
        raise _corrupt(path, f"next_row {saved['next_row']}, rows {saved['rows']}, chunk_rows "
                             f"{saved['chunk_rows']}")
    inputs = saved["inputs"]
    for role in input_roles(inputs):
        if not isinstance(inputs.get(role), dict):
            raise _corrupt(path, f"inputs.{role} must be an object, got {inputs.get(role)!r}")
    for optional in ("linear_bias", "groups"):
        if not isinstance(inputs.get(optional), (dict, type(None))):
            raise _corrupt(path, f"inputs.{optional} must be an object or null, got "
                                 f"{inputs[optional]!r}")
    return saved


def input_roles(inputs):
    """The files a run's `inputs` must name: the logits and labels, for a linear evaluation
    the hidden states, labels and weight (the bias is optional), for a comparison the two
    models' logits and the labels (the group ids are optional in each)."""
    if "hidden" in inputs:
        return ("hidden", "labels", "linear_weight")
    if "logits_a" in inputs:
        return ("logits_a", "logits_b", "labels")
    return ("logits", "labels")


def _file_of(identity):
    return "none" if identity is None else repr(identity.get("path"))


def check_same_run(path, saved, run, options):
    """Raise EvalFileError when the checkpoint was written by a different run.

    `run` is what this run records (``save_checkpoint``), `options` its EvaluationOptions;
    the saved options are compared with them as two Evaluators' options are.
    """
    try:
        saved_options = EvaluationOptions(**saved["options"])
    except (TypeError, ValueError) as exc:
        raise _corrupt(path, f"options: {exc}") from None
    differences = _input_differences(saved["inputs"], run["inputs"])
    differences += [f"option {name} was {old!r}, now {new!r}"
                    for name, old, new in saved_options.differences(options)]
    for key in ("rows", "chunk_rows"):
        if saved[key] != run[key]:
            differences.append(f"{key} was {saved[key]!r}, now {run[key]!r}")
    if differences:
        raise EvalFileError(f"{path}: checkpoint of another run ({'; '.join(differences)}); "
                            f"delete it to start over, or run with the same files and options")


def _input_differences(saved_inputs, inputs):
    """What differs between the saved inputs' identities and this run's, as phrases."""
    linear = "hidden" in inputs
    if ("hidden" in saved_inputs) != linear:
        kinds = {True: "hidden states through a linear layer (linear_weight)", False: "logits"}
        return [f"it evaluated {kinds[not linear]}, this run evaluates {kinds[linear]}"]
    differences = []
    for role, identity in inputs.items():
        old = saved_inputs.get(role)
        if (old is None) != (identity is None):
            differences.append(f"{role} was {_file_of(old)}, now {_file_of(identity)}")
            continue
        for key, value in (identity or {}).items():
            if key in ("fingerprint", "contents") and old.get(key) != value:
                differences.append(f"{role} content changed since the checkpoint was written "
                                   f"(its {'fingerprint' if key == 'fingerprint' else 'digest'} "
                                   f"differs)")
            elif old.get(key) != value:
                differences.append(f"{role} {key} was {old.get(key)!r}, now {value!r}")
    return differences


def saved_evaluator(path, saved, fresh, n_rows, n_classes, soft):
    """The Evaluator saved in a checkpoint of this run, checked against the run.

    `fresh` is this run's new Evaluator: the saved one must have its options, and the classes
    and target kind of the files once it has seen a row.
    """
    next_row, chunk_rows = saved["next_row"], saved["chunk_rows"]
    if next_row > n_rows or (next_row % chunk_rows and next_row != n_rows):
        raise _corrupt(path, f"next_row {next_row} of {n_rows} rows in chunks of {chunk_rows}")
    if saved["complete"] and next_row != n_rows:
        raise _corrupt(path, f"marked complete at next_row {next_row} of {n_rows} rows")
    try:
        evaluator = type(fresh).from_dict(saved["evaluator"], n_threads=fresh.options.n_threads)
    except ValueError as exc:
        raise _corrupt(path, exc) from None
    if evaluator.options != fresh.options:
        raise _corrupt(path, "the evaluator's options are not the checkpoint's options")
    seen = (evaluator.n_classes, evaluator.target_kind)
    expected = (n_classes, "soft" if soft else "labels") if next_row else (None, None)
    if seen != expected:
        raise _corrupt(path, f"the evaluator has n_classes {seen[0]!r} and target_kind "
                             f"{seen[1]!r} after {next_row} rows; expected {expected[0]!r} and "
                             f"{expected[1]!r}")
    count = evaluator.result().count
    if count > next_row:
        raise _corrupt(path, f"the evaluator counts {count} rows, more than the {next_row} read")
    return evaluator


def save_checkpoint(path, run, evaluator, next_row, complete):
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
    text = json.dumps(state, allow_nan=False)
    directory = os.path.dirname(os.path.abspath(path))
    try:
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
    except OSError as exc:
        raise EvalFileError(f"{path}: cannot save the checkpoint ({exc.strerror or exc})") \
            from None
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
