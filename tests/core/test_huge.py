"""Beyond 2^31 elements: the kernels in place on float32 arrays of 2^31 + 2^20 elements.

Opt-in (about 9 GB for the multiclass tests, 18 GB for the binary one):

    FASTXENT_HUGE_TESTS=1 pytest -q -p no:cacheprovider tests/core/test_huge.py

Every index past 2^31 must be computed in 64 bits. The input is a small random block of rows
tiled over the whole array, so every row's expected loss is known from the block (checked for
all rows), and the gradient (or softmax) is checked on sampled rows, the last ones included.
Nothing but the input, the labels and the per-row outputs is allocated: the calls run in place
(``out=input``).
"""

import os
import time

import numpy as np
import pytest

import fastxent
from reference import cross_entropy_ref

pytestmark = pytest.mark.skipif(os.environ.get("FASTXENT_HUGE_TESTS") != "1",
                                reason="set FASTXENT_HUGE_TESTS=1 (needs ~9-18 GB of memory)")

TOTAL = 2**31 + 2**20            # elements
BLOCK = 1024                     # rows in the tiled block


def _available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _need(n_bytes):
    if _available_bytes() < n_bytes * 1.1:
        pytest.skip(f"needs {n_bytes / 2**30:.1f} GiB of available memory")


def _fill(x, block):
    """x (N, C) <- block tiled along the rows (N a multiple of BLOCK)."""
    x.reshape(-1, BLOCK, x.shape[1])[:] = block


def _sample_rows(n_rows, rng):
    rows = np.concatenate([np.arange(4), n_rows - 1 - np.arange(4),
                           rng.integers(0, n_rows, 200)])
    return np.unique(rows)


def _report(what, t0):
    print(f"{what}: {time.perf_counter() - t0:.1f} s")


@pytest.mark.parametrize("n_classes", [1024, 16], ids=["wide_rows", "short_rows"])
def test_cross_entropy_in_place_beyond_2_31(n_classes):
    """cross_entropy_loss_and_grad(x, y, out=x) on (N, C) float32 with N*C = 2^31 + 2^20:
    every per-row loss, the sum, and sampled gradient rows match the reference."""
    n_rows = TOTAL // n_classes
    assert n_rows * n_classes > 2**31 and n_rows % BLOCK == 0
    _need(TOTAL * 4 + n_rows * (8 + 8 + 4))
    rng = np.random.default_rng(31)
    block = (3 * rng.standard_normal((BLOCK, n_classes))).astype(np.float32)
    y = rng.integers(0, n_classes, size=n_rows)
    y_block = y.reshape(-1, BLOCK)
    # reference per-row losses of every row, from the block's log-softmax
    b64 = block.astype(np.float64)
    m = b64.max(axis=1, keepdims=True)
    logp = b64 - (m + np.log(np.exp(b64 - m).sum(axis=1, keepdims=True)))
    ref_rows = -logp[np.arange(BLOCK)[None, :], y_block].reshape(-1)
    sample = _sample_rows(n_rows, rng)
    # the row holding element 2^31 and its neighbours
    sample = np.unique(np.concatenate([sample, [2**31 // n_classes - 1, 2**31 // n_classes,
                                                2**31 // n_classes + 1]]))

    x = np.empty((n_rows, n_classes), np.float32)
    t0 = time.perf_counter()
    _fill(x, block)
    _report("fill", t0)

    t0 = time.perf_counter()
    loss, grad = fastxent.cross_entropy_loss_and_grad(x, y, out=x, reduction="none")
    _report(f"cross_entropy_loss_and_grad none, C={n_classes}, in place", t0)
    assert grad is x
    np.testing.assert_allclose(loss, ref_rows, rtol=2e-5, atol=1e-6)
    for r in sample:
        _, g_ref = cross_entropy_ref(block[r % BLOCK][None, :], y[r:r + 1], reduction="none")
        np.testing.assert_allclose(x[r], g_ref[0], rtol=2e-5, atol=2e-6, err_msg=f"row {r}")

    _fill(x, block)
    t0 = time.perf_counter()
    total, grad = fastxent.cross_entropy_loss_and_grad(x, y, out=x, reduction="mean")
    _report(f"cross_entropy_loss_and_grad mean, C={n_classes}, in place", t0)
    expected = float(np.sum(ref_rows)) / n_rows
    assert abs(float(total) - expected) <= 1e-5 * expected, (total, expected)
    for r in sample[::7]:
        _, g_ref = cross_entropy_ref(block[r % BLOCK][None, :], y[r:r + 1], reduction="sum")
        np.testing.assert_allclose(x[r], g_ref[0] / n_rows, rtol=2e-5, atol=2e-6 / n_rows,
                                   err_msg=f"row {r}")

    if n_classes == 1024:
        _fill(x, block)
        t0 = time.perf_counter()
        assert fastxent.softmax(x, out=x) is x
        _report("softmax in place", t0)
        p_block = np.exp(logp)
        for r in sample:
            np.testing.assert_allclose(x[r], p_block[r % BLOCK], rtol=2e-5, atol=1e-12,
                                       err_msg=f"softmax row {r}")
        _fill(x, block)
        t0 = time.perf_counter()
        lse = fastxent.logsumexp(x)
        _report("logsumexp", t0)
        lse_block = (m + np.log(np.exp(b64 - m).sum(axis=1, keepdims=True)))[:, 0]
        np.testing.assert_allclose(lse.reshape(-1, BLOCK), np.broadcast_to(
            lse_block, (n_rows // BLOCK, BLOCK)), rtol=1e-6)


def test_binary_cross_entropy_in_place_beyond_2_31():
    """binary_cross_entropy_loss_and_grad(x, y, out=x) on 2^31 + 2^20 float32 elements (the
    target is a second full-size array: ~18 GB in all)."""
    _need(2 * TOTAL * 4)
    rng = np.random.default_rng(32)
    n_cols = 1024
    block = (3 * rng.standard_normal((BLOCK, n_cols))).astype(np.float32)
    t_block = (rng.uniform(size=(BLOCK, n_cols)) < 0.5).astype(np.float32)
    x = np.empty((TOTAL // n_cols, n_cols), np.float32)
    t = np.empty_like(x)
    t0 = time.perf_counter()
    _fill(x, block)
    _fill(t, t_block)
    _report("fill x and target", t0)
    t0 = time.perf_counter()
    total, grad = fastxent.binary_cross_entropy_loss_and_grad(x, t, out=x, reduction="sum")
    _report("binary_cross_entropy_loss_and_grad sum, in place", t0)
    assert grad is x
    b64, t64 = block.astype(np.float64), t_block.astype(np.float64)
    ref_block = (1 - t64) * b64 + np.logaddexp(0, -b64)
    expected = float(ref_block.sum()) * (x.shape[0] // BLOCK)
    assert abs(float(total) - expected) <= 1e-5 * expected, (total, expected)
    sig = 1 / (1 + np.exp(-b64))
    g_block = sig - t64
    for r in _sample_rows(x.shape[0], rng):
        np.testing.assert_allclose(x[r], g_block[r % BLOCK], rtol=2e-5, atol=1e-6,
                                   err_msg=f"row {r}")
