"""Type stubs for the kernel extensions (internal: fastxent/_core/_kernels.pxi).

_kernels_avx2 and _kernels_avx512 have the same contents. Float arrays are 1-D C-contiguous
float32 or float64 (one dtype per call); arguments must be validated by the caller.
"""

import enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

_Real = NDArray[np.floating[Any]]
_Int64 = NDArray[np.int64]
_Double = NDArray[np.float64]

class RowTransform(enum.IntEnum):
    SOFTMAX = 0
    LOG_SOFTMAX = 1
    LOGSUMEXP = 2

def openmp_enabled() -> bool: ...
def build_info() -> dict[str, str]: ...
def max_threads() -> int: ...
def uses_libmvec() -> bool: ...
def cpu_supports_avx2() -> bool: ...
def cpu_supports_avx512() -> bool: ...
def note_threads_started() -> None: ...
def class_cross_entropy(x: _Real, n_classes: int, n_inner: int, labels: _Int64 | None,
                        soft: _Real | None, class_weight: _Real | None,
                        sample_weight: _Double | None, has_ignore: bool, ignore_index: int,
                        label_smoothing: float, from_logits: bool, clip_eps: float,
                        grad_scale: float, row_loss: _Double | None, grad: _Real | None,
                        n_threads: int, hess: _Real | None = None, z_loss: float = 0.0,
                        softcap: float = 0.0, focal_gamma: float = 0.0,
                        lse: _Real | None = None) -> float: ...
def check_labels(labels: _Int64, n_classes: int, has_ignore: bool, ignore_index: int,
                 class_weight: _Double | None, sample_weight: _Double | None,
                 n_threads: int) -> tuple[int, float]: ...
def outside(x: _Real, lo: float, hi: float, has_skip: bool, skip: float,
            n_threads: int) -> tuple[int, int]: ...
def transform_rows(x: _Real, n_classes: int, n_inner: int, mode: RowTransform | int,
                   out: _Real | None, lse: _Real | None, n_threads: int) -> None: ...
def binary_cross_entropy(x: _Real, y: _Real, row_len: int, weight: _Real | None,
                         w_row_step: int, w_vec: bool, pos_weight: _Real | None,
                         pw_row_step: int, pw_vec: bool, label_smoothing: float,
                         has_ignore: bool, ignore_value: float, from_logits: bool,
                         clip_eps: float, grad_scale: float, loss_out: _Real | None,
                         grad: _Real | None, n_threads: int,
                         hess: _Real | None = None, softcap: float = 0.0,
                         focal_gamma: float = 0.0, focal_alpha: float = -1.0) -> float: ...

EVAL_STATS: tuple[str, ...]
HIST_LOW: int
HIST_OCTAVES: int
HIST_STEPS: int
HIST_BINS: int
TABLE_BYTES: int
MAX_SUPERBLOCKS: int
PAIRED_SUMS: tuple[str, ...]

def evaluate_rows(x: _Real, n_classes: int, n_inner: int, labels: _Int64 | None,
                  soft: _Real | None, class_weight: _Real | None,
                  sample_weight: _Double | None, has_ignore: bool, ignore_index: int,
                  from_logits: bool, clip_eps: float, topk: _Int64, n_bins: int,
                  groups: _Int64 | None, n_groups: int, per_class: bool, stats: _Double,
                  histogram: _Double, class_mass: _Double, class_table: _Double | None,
                  group_table: _Double | None, row_loss: _Double | None,
                  row_prediction: _Int64 | None, n_threads: int) -> None: ...

def paired_sums(loss_a: _Double, loss_b: _Double, pred_a: _Int64, pred_b: _Int64,
                labels: _Int64 | None, class_weight: _Double | None,
                sample_weight: _Double | None, has_ignore: bool, ignore_index: int,
                out: _Double, n_threads: int) -> None: ...
