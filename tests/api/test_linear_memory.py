"""The fused linear layer's peak memory, measured in a fresh process (Linux's peak resident
memory): one chunk of logits beyond the inputs and gradients, far below the N x V logits."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the peak resident memory from Linux's /proc")

N_ROWS, N_FEATURES, N_CLASSES = 8192, 16, 32000
LOGITS_BYTES = N_ROWS * N_CLASSES * 4          # float32: 1 GiB

_MEASURE = f"""
import sys
import numpy as np
import fastxent
from fastxent._bench.memory import peak_growth

rng = np.random.default_rng(0)
hidden = rng.standard_normal(({N_ROWS}, {N_FEATURES}), dtype=np.float32)
weight = rng.standard_normal(({N_CLASSES}, {N_FEATURES}), dtype=np.float32)
labels = rng.integers(0, {N_CLASSES}, {N_ROWS})
out = (np.zeros_like(hidden), np.zeros_like(weight), None)
calls = {{
    "loss_and_grad": lambda rows, chunk_rows: fastxent.linear_cross_entropy_loss_and_grad(
        hidden[:rows], weight, labels[:rows], chunk_rows=chunk_rows,
        out=(out[0][:rows], out[1], None)),
    "loss": lambda rows, chunk_rows: fastxent.linear_cross_entropy(
        hidden[:rows], weight, labels[:rows], chunk_rows=chunk_rows),
    "evaluate": lambda rows, chunk_rows: fastxent.evaluate_linear(
        hidden[:rows], weight, labels[:rows], chunk_rows=chunk_rows),
}}
call = calls[sys.argv[1]]
chunk_rows = None if sys.argv[2] == "default" else int(sys.argv[2])
call(8, 8)         # warm up BLAS and the kernels (their buffers and thread pools)
print(peak_growth(lambda: call({N_ROWS}, chunk_rows)))
"""


def peak_growth(call, chunk_rows="default"):
    """Bytes the peak resident memory grew by during `call` on all rows, in a new process."""
    run = subprocess.run([sys.executable, "-c", _MEASURE, call, str(chunk_rows)],
                         capture_output=True, text=True, timeout=300, check=True)
    return int(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("call", ("loss_and_grad", "loss", "evaluate"))
def test_peak_memory_is_one_chunk_not_the_logits(call):
    # The default chunk holds 64 MiB of logits here (512 rows of 32000 float32).
    assert peak_growth(call) < LOGITS_BYTES / 8


def test_measurement_sees_the_logits():
    """The measurement would catch N x V logits: one chunk of all rows is that big."""
    assert peak_growth("loss", chunk_rows=N_ROWS) > LOGITS_BYTES * 0.9
