"""Data generators, assertions and runners shared by the fastxent tests."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

import fastxent
from fastxent import cli
from fastxent._core.threads import SERIAL_BELOW

REDUCTIONS = ("none", "sum", "mean")

# rtol on values; gradients also get an atol relative to their largest magnitude.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}

MULTICLASS = {
    "loss": fastxent.cross_entropy,
    "grad": fastxent.cross_entropy_grad,
    "loss_and_grad": fastxent.cross_entropy_loss_and_grad,
}
BINARY = {
    "loss": fastxent.binary_cross_entropy,
    "grad": fastxent.binary_cross_entropy_grad,
    "loss_and_grad": fastxent.binary_cross_entropy_loss_and_grad,
}

# Big enough that n_threads=2 really runs two threads (SERIAL_BELOW elements and more).
BIG_ROWS = SERIAL_BELOW // 5 + 77


def compute_dtype(dtype):
    """fastxent's computation dtype for an input of `dtype`."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32 if dtype.kind == "f" and dtype.itemsize == 4 else np.float64)


def logits(rng, shape, dtype=np.float64, scale=3.0):
    """Random logits of `dtype` (small integers for integer dtypes)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return rng.integers(-4, 5, size=shape).astype(dtype)
    return (scale * rng.standard_normal(shape)).astype(dtype)


def probabilities(rng, shape, dtype=np.float64, axis=-1, lo=0.02):
    """Random probability rows (summing to about 1 along `axis`, each entry >= ~lo)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 2, size=shape).astype(dtype)
    p = rng.uniform(lo, 1.0, size=shape)
    p /= p.sum(axis=axis, keepdims=True)
    return np.clip(p, 0.0, 1.0).astype(dtype)


def labels(rng, rows_shape, n_classes, dtype=np.int64):
    """Random integer class labels in [0, n_classes)."""
    return rng.integers(0, n_classes, size=rows_shape).astype(dtype)


def soft_targets(rng, shape, dtype=np.float64, axis=-1):
    """Random soft-target rows (non-negative, summing to about 1 along `axis`)."""
    t = rng.uniform(0.0, 1.0, size=shape)
    t /= t.sum(axis=axis, keepdims=True)
    return np.clip(t, 0.0, 1.0).astype(dtype)


def assert_close(got, expected, dtype, rtol=None, atol_rel=None, atol=0.0, what=""):
    """Compare `got` with the float64 `expected` at the tolerance of computation `dtype`.

    ``atol = atol + atol_rel * max|expected|`` (finite entries), so that entries small next to
    the largest one (gradient components that cancel) are compared on the array's scale.
    """
    dtype = np.dtype(dtype)
    rtol = RTOL[dtype] if rtol is None else rtol
    atol_rel = rtol if atol_rel is None else atol_rel
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    finite = expected[np.isfinite(expected)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol + atol_rel * scale,
                               equal_nan=True, err_msg=what)


def call(funcs, which, x, t, out=None, **kwargs):
    """Call ``funcs[which]``; return (loss or None, grad or None)."""
    if which == "loss":
        return funcs["loss"](x, t, **kwargs), None
    if which == "grad":
        return None, funcs["grad"](x, t, out=out, **kwargs)
    return funcs["loss_and_grad"](x, t, out=out, **kwargs)


def check_result_types(loss, grad, x_shape, loss_shape, reduction, dtype, out=None):
    """The loss has the computation dtype (an array for "none"), grad is out when given."""
    dtype = np.dtype(dtype)
    if loss is not None:
        if reduction == "none":
            assert isinstance(loss, np.ndarray)
            assert loss.shape == loss_shape
        else:
            assert np.ndim(loss) == 0
            assert isinstance(loss, np.generic)
        assert loss.dtype == dtype
    if grad is not None:
        assert isinstance(grad, np.ndarray)
        assert grad.shape == x_shape
        assert grad.dtype == dtype
        if out is not None:
            assert grad is out
            assert np.shares_memory(grad, out)


def raises_untouched(func, args, kwargs, exc, fragments, buffers=()):
    """Assert ``func(*args, **kwargs)`` raises `exc` whose message holds every fragment, and
    that every array in `buffers` (``out``, the input for in-place calls) is unchanged."""
    before = [np.array(b, copy=True) for b in buffers]
    with pytest.raises(exc) as info:
        func(*args, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    for b, old in zip(buffers, before, strict=True):
        np.testing.assert_array_equal(b, old)
    return info


def write_eval_files(tmp_path, monkeypatch, n_rows, n_classes):
    """Write ``logits.npy`` (float32, the label's logit raised by 1.5) and ``labels.npy`` in
    `tmp_path`, make it the working directory, and return ``(logits, labels)``."""
    rng = np.random.default_rng(0)
    x = (2.0 * rng.standard_normal((n_rows, n_classes))).astype(np.float32)
    y = rng.integers(0, n_classes, n_rows)
    x[np.arange(n_rows), y] += 1.5
    np.save(tmp_path / "logits.npy", x)
    np.save(tmp_path / "labels.npy", y)
    monkeypatch.chdir(tmp_path)
    return x, y


class StopRun(Exception):
    """Raised by :func:`stop_after` to stop an evaluation mid-run."""


def stop_after(monkeypatch, n_chunks):
    """Make ``evaluate_files``'s chunk loop raise StopRun after `n_chunks` label checks (a crash
    mid-run)."""
    from fastxent._eval import files as _files
    calls = []
    original = _files._check_labels

    def check(*args):
        calls.append(1)
        if len(calls) > n_chunks:
            raise StopRun
        return original(*args)

    monkeypatch.setattr(_files, "_check_labels", check)


def multiclass_case(rng, shape, axis, dtype, from_logits, spec):
    """A multiclass input, its target and the options `spec` asks for.

    `spec` maps option names to values, with placeholders: ``"w"`` draws per-class weights,
    ``"s"`` per-row sample weights, ``"soft": True`` soft targets (else integer labels, every
    fourth one ``ignore_index`` when the spec has it). Logits are normal with scale 3;
    probabilities are their softmax.

    Returns
    -------
    x : ndarray of `dtype`
    target : ndarray
    kw : dict
        The options, placeholders drawn.
    """
    n_classes = shape[axis]
    rows_shape = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    z = rng.normal(0.0, 3.0, shape)
    x = z if from_logits else np.exp(z) / np.exp(z).sum(axis=axis, keepdims=True)
    kw = {}
    for key, value in spec.items():
        if value == "w":
            kw[key] = rng.uniform(0.2, 2.0, n_classes)
        elif value == "s":
            kw[key] = rng.uniform(0.0, 3.0, rows_shape)
        elif key != "soft":
            kw[key] = value
    if spec.get("soft"):
        t = rng.uniform(0, 1, shape)
        target = (t / t.sum(axis=axis, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, n_classes, rows_shape)
        if "ignore_index" in kw:
            target.reshape(-1)[::4] = kw["ignore_index"]
    return x.astype(dtype), target, kw


# --------------------------------------------------------------------------------------------
# fastxent.torch


def torch_generator(*key):
    """A ``torch.Generator`` seeded from `key`: the same key draws the same numbers in every
    run, whatever ran before."""
    import torch
    return torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))


# --------------------------------------------------------------------------------------------
# EvaluationResult comparisons, and fastxent.dask's blocks of rows

# 20 uneven blocks of rows (some tiny, one empty): with split_every=3 the tree has 3 levels
DASK_CHUNKS = (7, 300, 1, 150, 0, 420, 33, 250, 64, 500, 2, 301, 99, 180, 45, 260, 12, 333, 77,
               120)


def dask_block_of_row(row):
    """The block of DASK_CHUNKS that holds `row`, as a Dask error names it: ``"start:stop"``."""
    index = int(np.searchsorted(np.cumsum(DASK_CHUNKS), row, side="right"))
    return f"{sum(DASK_CHUNKS[:index])}:{sum(DASK_CHUNKS[:index + 1])}"


def same(a, b):
    """Bitwise-equal results (NaN equals NaN), compared through to_dict()."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


def assert_close_nested(got, want, rtol, atol, where):
    """Equal up to `rtol` and `atol`: nested dicts/lists of numbers (NaN equals NaN), None,
    ints, strings (equal); `where` names the entry that differs."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert got.keys() == want.keys(), where
        for key in want:
            assert_close_nested(got[key], want[key], rtol, atol, f"{where}[{key!r}]")
    elif want is None:
        assert got is None, where
    elif isinstance(want, str):
        assert got == want, (where, got, want)
    elif isinstance(want, list) and any(x is None or isinstance(x, (dict, list, str))
                                        for x in want):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close_nested(g, w, rtol, atol, f"{where}[{i}]")
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=where)


def assert_same_evaluation(got, want, rtol, atol=0.0):
    """`got` is an EvaluationResult counting the rows `want` counts, its to_dict() equal to
    `want`'s up to `rtol` and `atol` (NaN equals NaN)."""
    assert isinstance(got, fastxent.EvaluationResult)
    assert got.count == want.count
    assert_close_nested(got.to_dict(), want.to_dict(), rtol, atol, "result")


# --------------------------------------------------------------------------------------------
# ``fastxent eval``, in this process and in another


def eval_main(capsys, *argv):
    """Run ``fastxent eval`` with `argv` in this process; return (status, stdout, stderr)."""
    status = cli.main(["eval", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def metric_cells(out):
    """The metrics table of ``fastxent eval``'s text output as ``{label: value}``: the lines
    under the ``metric value`` header up to the first blank line (labels may hold spaces;
    two or more spaces separate them from the value, which may read ``x ± h``)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["metric", "value"])
    assert set(lines[start + 1]) <= {"-", " "}
    cells = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        label, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        cells[label] = value
    return cells


def _reject_constant(name):
    raise AssertionError(f"non-strict JSON constant {name}")


def strict_loads(text):
    """``json.loads`` that fails on NaN and Infinity, which strict JSON has not."""
    return json.loads(text, parse_constant=_reject_constant)


def eval_command(*argv):
    """The command line that runs ``fastxent eval`` with `argv` in a new Python process."""
    return [sys.executable, "-m", "fastxent.cli", "eval", *argv]


def without_chunk_delay():
    """``os.environ`` without the delay a chunk of ``fastxent eval`` may have been given."""
    from fastxent._eval import files as _files
    return {key: value for key, value in os.environ.items() if key != _files._CHUNK_DELAY_ENV}


def run_eval_command(command, timeout):
    """Run an eval_command() to its end at full speed; return its CompletedProcess (text)."""
    return subprocess.run(command, capture_output=True, text=True, env=without_chunk_delay(),
                          timeout=timeout)


def kill_at_first_checkpoint(command, state, rows, timeout):
    """Start `command`, an eval_command() that checkpoints to the path `state`, slowed down to
    20 ms a chunk, and SIGKILL it as soon as the checkpoint appears; return the checkpoint.

    The killed process has printed nothing, and its checkpoint is incomplete, at a row within
    the `rows`. Of 200 chunks (about 4 s) the first checkpoint comes after about 1 s.
    """
    from fastxent._eval import files as _files
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**without_chunk_delay(), _files._CHUNK_DELAY_ENV: "0.02"})
    deadline = time.monotonic() + timeout
    while not state.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == -signal.SIGKILL and out == b""
    saved = json.loads(state.read_text())
    assert saved["complete"] is False and 0 < saved["next_row"] < rows
    return saved
