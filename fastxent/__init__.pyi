"""Type stubs for fastxent's public API (see fastxent/__init__.py)."""

from typing import Any, Literal, SupportsIndex, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

__version__: str
__all__: list[str]

_Float = np.floating[Any]
_Array = NDArray[np.floating[Any]]
_Reduced = Literal["mean", "sum"]
_Reduction = Literal["mean", "sum", "none"]

# ---- multiclass -----------------------------------------------------------------------------

@overload
def cross_entropy(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                  weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
                  ignore_index: int | None = ..., label_smoothing: float = ...,
                  eps: float | None = ..., reduction: _Reduced = ..., axis: SupportsIndex = ...,
                  validate: bool = ..., n_threads: int | None = ...) -> _Float: ...
@overload
def cross_entropy(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                  weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
                  ignore_index: int | None = ..., label_smoothing: float = ...,
                  eps: float | None = ..., reduction: Literal["none"], axis: SupportsIndex = ...,
                  validate: bool = ..., n_threads: int | None = ...) -> _Array: ...
@overload
def cross_entropy(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                  weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
                  ignore_index: int | None = ..., label_smoothing: float = ...,
                  eps: float | None = ..., reduction: str = ..., axis: SupportsIndex = ...,
                  validate: bool = ..., n_threads: int | None = ...) -> _Float | _Array: ...

def cross_entropy_grad(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                       weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
                       ignore_index: int | None = ..., label_smoothing: float = ...,
                       eps: float | None = ..., reduction: _Reduction = ...,
                       axis: SupportsIndex = ..., validate: bool = ...,
                       n_threads: int | None = ..., out: _Array | None = ...) -> _Array: ...

@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduced = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., out: _Array | None = ...) -> tuple[_Float, _Array]: ...
@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: Literal["none"], axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., out: _Array | None = ...) -> tuple[_Array, _Array]: ...
@overload
def cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., sample_weight: ArrayLike | None = ...,
    ignore_index: int | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., axis: SupportsIndex = ..., validate: bool = ...,
    n_threads: int | None = ..., out: _Array | None = ...) -> tuple[_Float | _Array, _Array]: ...

# ---- binary ---------------------------------------------------------------------------------

@overload
def binary_cross_entropy(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                         weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
                         ignore_index: float | None = ..., label_smoothing: float = ...,
                         eps: float | None = ..., reduction: _Reduced = ...,
                         validate: bool = ..., n_threads: int | None = ...) -> _Float: ...
@overload
def binary_cross_entropy(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                         weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
                         ignore_index: float | None = ..., label_smoothing: float = ...,
                         eps: float | None = ..., reduction: Literal["none"],
                         validate: bool = ..., n_threads: int | None = ...) -> _Array: ...
@overload
def binary_cross_entropy(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                         weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
                         ignore_index: float | None = ..., label_smoothing: float = ...,
                         eps: float | None = ..., reduction: str = ...,
                         validate: bool = ..., n_threads: int | None = ...) -> _Float | _Array: ...

def binary_cross_entropy_grad(input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
                              weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
                              ignore_index: float | None = ..., label_smoothing: float = ...,
                              eps: float | None = ..., reduction: _Reduction = ...,
                              validate: bool = ..., n_threads: int | None = ...,
                              out: _Array | None = ...) -> _Array: ...

@overload
def binary_cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: _Reduced = ..., validate: bool = ..., n_threads: int | None = ...,
    out: _Array | None = ...) -> tuple[_Float, _Array]: ...
@overload
def binary_cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: Literal["none"], validate: bool = ..., n_threads: int | None = ...,
    out: _Array | None = ...) -> tuple[_Array, _Array]: ...
@overload
def binary_cross_entropy_loss_and_grad(
    input: ArrayLike, target: ArrayLike, *, from_logits: bool = ...,
    weight: ArrayLike | None = ..., pos_weight: ArrayLike | None = ...,
    ignore_index: float | None = ..., label_smoothing: float = ..., eps: float | None = ...,
    reduction: str = ..., validate: bool = ..., n_threads: int | None = ...,
    out: _Array | None = ...) -> tuple[_Float | _Array, _Array]: ...

# ---- softmax building blocks ----------------------------------------------------------------

def softmax(x: ArrayLike, *, axis: SupportsIndex = ..., out: _Array | None = ...,
            n_threads: int | None = ...) -> _Array: ...
def log_softmax(x: ArrayLike, *, axis: SupportsIndex = ..., out: _Array | None = ...,
                n_threads: int | None = ...) -> _Array: ...
def logsumexp(x: ArrayLike, *, axis: SupportsIndex = ..., out: _Array | None = ...,
              n_threads: int | None = ...) -> _Array: ...

# ---- threads and build ----------------------------------------------------------------------

def effective_n_threads(n_threads: int | None = ...) -> int: ...
def config() -> dict[str, Any]: ...
def get_include() -> str: ...
def show_config() -> None: ...
