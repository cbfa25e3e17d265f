"""Thread counts: n_threads resolution and results independent of the thread count."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastxent
from fastxent._core.threads import SERIAL_BELOW, threads_for
from helpers import labels, logits, probabilities, soft_targets

N_ROWS = 3 * SERIAL_BELOW // 8 + 11     # 8 classes: 3 blocks and a bit, over the threshold


def test_effective_n_threads():
    """None: the usable cores; positive: that many; negative counts back; 0 is an error."""
    cores = fastxent.effective_n_threads()
    assert cores >= 1
    assert fastxent.effective_n_threads(-1) == cores
    assert fastxent.effective_n_threads(-2) == max(1, cores - 1)
    assert fastxent.effective_n_threads(-10_000) == 1
    if fastxent.config()["openmp"]:
        assert fastxent.effective_n_threads(3) == 3
        assert fastxent.effective_n_threads(np.int32(2)) == 2
    with pytest.raises(ValueError, match="n_threads"):
        fastxent.effective_n_threads(0)
    with pytest.raises(TypeError, match="n_threads"):
        fastxent.effective_n_threads(2.0)
    with pytest.raises(TypeError, match="n_threads"):
        fastxent.effective_n_threads(False)


def test_small_inputs_run_serially():
    """Inputs below SERIAL_BELOW elements run on one thread."""
    assert threads_for(SERIAL_BELOW - 1, 4) == 1
    assert threads_for(SERIAL_BELOW, 4) == (4 if fastxent.config()["openmp"] else 1)


def test_omp_num_threads_honoured():
    """OMP_NUM_THREADS sets the default thread count."""
    code = "import fastxent; print(fastxent.effective_n_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    expected = 3 if fastxent.config()["openmp"] else 1
    assert int(out) == expected


def _multiclass(rng, from_logits, target, opts):
    x = (logits(rng, (N_ROWS, 8)) if from_logits else probabilities(rng, (N_ROWS, 8)))
    t = labels(rng, (N_ROWS,), 8) if target == "labels" else soft_targets(rng, (N_ROWS, 8))
    kw = dict(opts, from_logits=from_logits)
    if "sample_weight" in kw:
        kw["sample_weight"] = rng.uniform(0.5, 2, size=N_ROWS)
    return x, t, kw


MC_OPTS = {"plain": {},
           "weights": {"weight": np.linspace(0.5, 2, 8), "label_smoothing": 0.1,
                       "sample_weight": True},
           "ignore": {"ignore_index": 3}}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opts, target", [
    pytest.param(o, t, id=f"{name}-{t}") for name, o in MC_OPTS.items()
    for t in ("labels", "soft") if not (t == "soft" and name == "ignore")])
@pytest.mark.parametrize("from_logits", [True, False])
def test_multiclass_thread_invariance(from_logits, target, opts, dtype):
    """Elementwise outputs are bitwise equal for 1, 2 and 3 threads; sums and means too
    (fixed block order)."""
    rng = np.random.default_rng(12)
    x, t, kw = _multiclass(rng, from_logits, target, opts)
    x = x.astype(dtype)
    res = {}
    for n in (1, 2, 3):
        none, grad = fastxent.cross_entropy_loss_and_grad(x, t, reduction="none", n_threads=n,
                                                          **kw)
        total = fastxent.cross_entropy(x, t, reduction="sum", n_threads=n, **kw)
        mean, grad_mean = fastxent.cross_entropy_loss_and_grad(x, t, n_threads=n, **kw)
        res[n] = (none, grad, total, mean, grad_mean)
    for n in (2, 3):
        for a, b in zip(res[1], res[n], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opts", [{}, {"weight": "row", "pos_weight": "col"},
                                  {"ignore_index": -1, "label_smoothing": 0.05}],
                         ids=["plain", "weights", "ignore"])
@pytest.mark.parametrize("from_logits", [True, False])
def test_binary_thread_invariance(from_logits, opts):
    """Binary: elementwise outputs and reductions identical for 1, 2 and 3 threads."""
    rng = np.random.default_rng(13)
    shape = (SERIAL_BELOW // 100 * 3, 100)
    x = rng.normal(0, 3, size=shape) if from_logits else rng.uniform(0.01, 0.99, size=shape)
    y = rng.uniform(size=shape)
    kw = {"from_logits": from_logits}
    for k, v in opts.items():
        kw[k] = (rng.uniform(0.5, 2, size=(shape[0], 1)) if v == "row"
                 else rng.uniform(0.5, 2, size=shape[-1]) if v == "col" else v)
    if "ignore_index" in kw:
        y.reshape(-1)[::7] = -1
    res = {}
    for n in (1, 2, 3):
        none, grad = fastxent.binary_cross_entropy_loss_and_grad(x, y, reduction="none",
                                                                 n_threads=n, **kw)
        total = fastxent.binary_cross_entropy(x, y, reduction="sum", n_threads=n, **kw)
        mean = fastxent.binary_cross_entropy(x, y, n_threads=n, **kw)
        res[n] = (none, grad, total, mean)
    for n in (2, 3):
        for a, b in zip(res[1], res[n], strict=True):
            np.testing.assert_array_equal(a, b)


def test_default_and_negative_thread_counts_match():
    """n_threads=None, -1 and a count above the cores give the same bits as 1 thread."""
    rng = np.random.default_rng(15)
    x = logits(rng, (N_ROWS, 8))
    y = labels(rng, (N_ROWS,), 8)
    ref = fastxent.cross_entropy_loss_and_grad(x, y, n_threads=1)
    for n in (None, -1, 5):
        got = fastxent.cross_entropy_loss_and_grad(x, y, n_threads=n)
        assert got[0] == ref[0]
        np.testing.assert_array_equal(got[1], ref[1])


def test_axis1_thread_invariance():
    """(N, C, d1, d2) with axis=1: identical for 1 and 2 threads."""
    rng = np.random.default_rng(14)
    x = rng.normal(size=(40, 5, 16, 12))
    y = labels(rng, (40, 16, 12), 5)
    a = fastxent.cross_entropy_loss_and_grad(x, y, axis=1, reduction="none", n_threads=1)
    b = fastxent.cross_entropy_loss_and_grad(x, y, axis=1, reduction="none", n_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert (fastxent.cross_entropy(x, y, axis=1, n_threads=1)
            == fastxent.cross_entropy(x, y, axis=1, n_threads=2))
