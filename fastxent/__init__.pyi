"""Type stubs for fastxent's public API (see fastxent/__init__.py)."""

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any, Literal, SupportsIndex, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

__version__: str

_Float = np.floating[Any]
_Array = NDArray[np.floating[Any]]
_Reduced = Literal["mean", "sum"]
_Reduction = Literal["mean", "sum", "none"]

# ---- multiclass -----------------------------------------------------------------------------

@overload
def cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduced = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    return_lse: Literal[False] = ...) -> _Float: ...
@overload
def cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: Literal["none"], axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    return_lse: Literal[False] = ...) -> _Array: ...
@overload
def cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    return_lse: Literal[False] = ...) -> _Float | _Array: ...
@overload
def cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    return_lse: Literal[True]) -> tuple[_Float | _Array, _Array]: ...
@overload
def cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    return_lse: bool) -> _Float | _Array | tuple[_Float | _Array, _Array]: ...

def cross_entropy_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduction = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    out: _Array | None = ...) -> _Array: ...

@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduced = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    out: _Array | None = ..., return_lse: Literal[False] = ...) -> tuple[_Float, _Array]: ...
@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: Literal["none"], axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    out: _Array | None = ..., return_lse: Literal[False] = ...) -> tuple[_Array, _Array]: ...
@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    out: _Array | None = ..., return_lse: Literal[False] = ...) -> tuple[_Float | _Array,
    _Array]: ...
@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    out: _Array | None = ..., return_lse: Literal[True]) -> tuple[_Float | _Array, _Array,
    _Array]: ...
@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    out: _Array | None = ..., return_lse: bool) -> tuple[_Float | _Array,
    _Array] | tuple[_Float | _Array, _Array, _Array]: ...

def cross_entropy_grad_hess(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduction = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., z_loss: float = ..., softcap: float | None = ...,
    focal_gamma: float = ..., focal_alpha: float | ArrayLike | None = ...,
    out: _Array | None = ..., hess_out: _Array | None = ...) -> tuple[_Array, _Array]: ...

# ---- a linear layer fused with cross-entropy ------------------------------------------------

def linear_cross_entropy(
    input: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = ..., weight: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ..., ignore_index: int | None = ...,
    label_smoothing: float = ..., reduction: _Reduction = ..., validate: bool = ...,
    chunk_rows: int | None = ..., n_threads: int | None = ..., z_loss: float = ...,
    softcap: float | None = ..., focal_gamma: float = ...,
    focal_alpha: float | ArrayLike | None = ...) -> _Float | _Array: ...

def linear_cross_entropy_loss_and_grad(
    input: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
    linear_bias: ArrayLike | None = ..., weight: ArrayLike | None = ...,
    sample_weight: ArrayLike | None = ..., ignore_index: int | None = ...,
    label_smoothing: float = ..., reduction: _Reduction = ..., validate: bool = ...,
    chunk_rows: int | None = ..., n_threads: int | None = ..., z_loss: float = ...,
    softcap: float | None = ..., focal_gamma: float = ...,
    focal_alpha: float | ArrayLike | None = ...,
    out: tuple[_Array | None, _Array | None, _Array | None] | None = ...,
    wrt: str | Sequence[str] = ...,
) -> tuple[_Float | _Array, _Array | None, _Array | None, _Array | None]: ...

# ---- binary ---------------------------------------------------------------------------------

@overload
def binary_cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduced = ..., validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ...,
    focal_alpha: float | None = ...) -> _Float: ...
@overload
def binary_cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: Literal["none"], validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ...,
    focal_alpha: float | None = ...) -> _Array: ...
@overload
def binary_cross_entropy(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ...,
    focal_alpha: float | None = ...) -> _Float | _Array: ...

def binary_cross_entropy_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduction = ..., validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ..., focal_alpha: float | None = ...,
    out: _Array | None = ...) -> _Array: ...

def binary_cross_entropy_grad_hess(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduction = ..., validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ..., focal_alpha: float | None = ...,
    out: _Array | None = ..., hess_out: _Array | None = ...) -> tuple[_Array, _Array]: ...

@overload
def binary_cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduced = ..., validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ..., focal_alpha: float | None = ...,
    out: _Array | None = ...) -> tuple[_Float, _Array]: ...
@overload
def binary_cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: Literal["none"], validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ..., focal_alpha: float | None = ...,
    out: _Array | None = ...) -> tuple[_Array, _Array]: ...
@overload
def binary_cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., validate: bool = ..., n_threads: int | None = ...,
    softcap: float | None = ..., focal_gamma: float = ..., focal_alpha: float | None = ...,
    out: _Array | None = ...) -> tuple[_Float | _Array, _Array]: ...

# ---- softmax building blocks ----------------------------------------------------------------

def softmax(x: ArrayLike, *, axis: SupportsIndex = ..., out: _Array | None = ...,
            n_threads: int | None = ...) -> _Array: ...
def log_softmax(x: ArrayLike, *, axis: SupportsIndex = ..., out: _Array | None = ...,
                n_threads: int | None = ...) -> _Array: ...
def logsumexp(x: ArrayLike, *, axis: SupportsIndex | tuple[SupportsIndex, ...] = ...,
              out: _Array | None = ...,
              n_threads: int | None = ...) -> _Array: ...

# ---- evaluation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CalibrationBins:
    edges: NDArray[np.float64]
    weight: NDArray[np.float64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    def to_dict(self) -> dict[str, list[float]]: ...

@dataclass(frozen=True)
class LossHistogram:
    edges: NDArray[np.float64]
    mass: NDArray[np.float64]
    loss: NDArray[np.float64]
    def worst_share(self, fraction: float) -> float: ...
    def curve(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
    def to_dict(self) -> dict[str, list[float]]: ...

@dataclass(frozen=True)
class SliceTable:
    keys: NDArray[np.int64]
    count: NDArray[np.int64]
    weight_sum: NDArray[np.float64]
    loss: NDArray[np.float64]
    loss_se: NDArray[np.float64]
    perplexity: NDArray[np.float64]
    entropy: NDArray[np.float64]
    brier: NDArray[np.float64]
    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64] | None
    topk: dict[int, NDArray[np.float64]] | None
    calibration_gap: NDArray[np.float64] | None
    precision: NDArray[np.float64] | None
    def __len__(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...

@dataclass(frozen=True)
class EvaluationResult:
    loss: float
    perplexity: float
    accuracy: float | None
    topk: dict[int, float] | None
    entropy: float
    brier: float
    ece: float | None
    ece_bins: CalibrationBins | None
    count: int
    weight_sum: float
    n_classes: int | None
    loss_bits: float
    loss_se: float
    loss_ci: tuple[float, float]
    accuracy_ci: tuple[float, float] | None
    topk_ci: dict[int, tuple[float, float]] | None
    confidence: float
    uniform_loss: float
    prior_loss: float
    prior_source: Literal["seen", "given"]
    skill: float
    target_entropy: float | None
    kl: float | None
    concentration: dict[float, float]
    loss_histogram: LossHistogram
    per_class: SliceTable | None
    confusion: NDArray[np.float64] | None
    groups: SliceTable | None
    def to_dict(self) -> dict[str, Any]: ...
    def summary(self) -> str: ...

class Evaluator:
    from_logits: bool
    topk: tuple[int, ...]
    n_classes: int | None
    target_kind: Literal["labels", "soft"] | None
    def __init__(self, *, from_logits: bool = ..., topk: Sequence[int] = ...,
                 weight: ArrayLike | None = ..., ignore_index: int | None = ...,
                 eps: float | None = ..., axis: SupportsIndex = ..., validate: bool = ...,
                 n_threads: int | None = ..., per_class: bool = ..., confusion: bool = ...,
                 prior: ArrayLike | None = ...) -> None: ...
    def update(self, input: ArrayLike, target: ArrayLike,
               sample_weight: ArrayLike | None = ...,
               groups: ArrayLike | None = ...) -> Evaluator: ...
    def update_linear(self, input: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
                      linear_bias: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
                      groups: ArrayLike | None = ...,
                      chunk_rows: int | None = ...) -> Evaluator: ...
    def merge(self, other: Evaluator) -> Evaluator: ...
    def result(self) -> EvaluationResult: ...
    def to_dict(self) -> dict[str, Any]: ...
    @classmethod
    def from_dict(cls, state: dict[str, Any], n_threads: int | None = ...) -> Evaluator: ...

def evaluate(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
             topk: Sequence[int] = ..., weight: ArrayLike | None = ...,
             sample_weight: ArrayLike | None = ..., groups: ArrayLike | None = ...,
             per_class: bool = ..., confusion: bool = ..., prior: ArrayLike | None = ...,
             ignore_index: int | None = ..., eps: float | None = ...,
             axis: SupportsIndex = ..., validate: bool = ...,
             n_threads: int | None = ...) -> EvaluationResult: ...

@dataclass(frozen=True)
class McNemar:
    only_a_correct: int
    only_b_correct: int
    p_value: float
    def to_dict(self) -> dict[str, Any]: ...

@dataclass(frozen=True)
class ComparisonResult:
    a: EvaluationResult
    b: EvaluationResult
    loss_diff: float
    loss_diff_se: float
    loss_diff_ci: tuple[float, float]
    loss_diff_p: float
    accuracy_diff: float | None
    accuracy_diff_se: float | None
    accuracy_diff_ci: tuple[float, float] | None
    mcnemar: McNemar | None
    per_class_loss_diff: NDArray[np.float64] | None
    per_class_accuracy_diff: NDArray[np.float64] | None
    count: int
    def to_dict(self) -> dict[str, Any]: ...
    def summary(self) -> str: ...

class Comparator:
    a: Evaluator
    b: Evaluator
    @property
    def options(self) -> Any: ...
    @property
    def n_classes(self) -> int | None: ...
    @property
    def target_kind(self) -> Literal["labels", "soft"] | None: ...
    def __init__(self, *, from_logits: bool = ..., topk: Sequence[int] = ...,
                 weight: ArrayLike | None = ..., ignore_index: int | None = ...,
                 eps: float | None = ..., axis: SupportsIndex = ..., validate: bool = ...,
                 n_threads: int | None = ..., per_class: bool = ...,
                 prior: ArrayLike | None = ...) -> None: ...
    def update(self, input_a: ArrayLike, input_b: ArrayLike, target: ArrayLike,
               sample_weight: ArrayLike | None = ...,
               groups: ArrayLike | None = ...) -> Comparator: ...
    def merge(self, other: Comparator) -> Comparator: ...
    def result(self) -> ComparisonResult: ...
    def to_dict(self) -> dict[str, Any]: ...
    @classmethod
    def from_dict(cls, state: dict[str, Any], n_threads: int | None = ...) -> Comparator: ...

def compare(input_a: ArrayLike, input_b: ArrayLike, target: ArrayLike, *,
            from_logits: bool = ..., topk: Sequence[int] = ..., weight: ArrayLike | None = ...,
            sample_weight: ArrayLike | None = ..., groups: ArrayLike | None = ...,
            per_class: bool = ..., prior: ArrayLike | None = ...,
            ignore_index: int | None = ..., eps: float | None = ...,
            axis: SupportsIndex = ..., validate: bool = ...,
            n_threads: int | None = ...) -> ComparisonResult: ...

def evaluate_linear(input: ArrayLike, linear_weight: ArrayLike, target: ArrayLike, *,
                    linear_bias: ArrayLike | None = ..., topk: Sequence[int] = ...,
                    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
                    ignore_index: int | None = ..., chunk_rows: int | None = ...,
                    n_threads: int | None = ...) -> EvaluationResult: ...

class EvalFileError(ValueError): ...

def evaluate_files(logits_path: str | PathLike[str], labels_path: str | PathLike[str], *,
                   from_logits: bool = ..., topk: Sequence[int] = ...,
                   weight: ArrayLike | None = ..., ignore_index: int | None = ...,
                   eps: float | None = ..., chunk_rows: int | None = ...,
                   checkpoint: str | PathLike[str] | None = ..., progress: bool | None = ...,
                   n_threads: int | None = ...,
                   checkpoint_interval: float = ...,
                   linear_weight: str | PathLike[str] | None = ...,
                   linear_bias: str | PathLike[str] | None = ...,
                   groups: str | PathLike[str] | None = ..., per_class: bool = ...,
                   confusion: bool = ...,
                   prior: ArrayLike | None = ...) -> EvaluationResult: ...

def compare_files(logits_a_path: str | PathLike[str], logits_b_path: str | PathLike[str],
                  labels_path: str | PathLike[str], *, from_logits: bool = ...,
                  topk: Sequence[int] = ..., weight: ArrayLike | None = ...,
                  ignore_index: int | None = ..., eps: float | None = ...,
                  chunk_rows: int | None = ...,
                  checkpoint: str | PathLike[str] | None = ..., progress: bool | None = ...,
                  n_threads: int | None = ..., checkpoint_interval: float = ...,
                  groups: str | PathLike[str] | None = ..., per_class: bool = ...,
                  prior: ArrayLike | None = ...) -> ComparisonResult: ...

# ---- threads and build ----------------------------------------------------------------------

def effective_n_threads(n_threads: int | None = ...) -> int: ...
def config() -> dict[str, Any]: ...
def get_include() -> str: ...
def show_config() -> None: ...
