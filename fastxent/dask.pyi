"""Type stubs for fastxent.dask (needs Dask at run time)."""

from collections.abc import Sequence
from typing import Literal, overload

from dask.array import Array
from dask.delayed import Delayed
from numpy.typing import ArrayLike

from fastxent import EvaluationResult

SPLIT_EVERY: int

@overload
def evaluate(input: Array | ArrayLike, target: Array | ArrayLike, *, from_logits: bool = ...,
             topk: Sequence[int] = ...,
             weight: ArrayLike | None = ..., sample_weight: Array | ArrayLike | None = ...,
             groups: Array | ArrayLike | None = ..., per_class: bool = ...,
             confusion: bool = ..., prior: ArrayLike | None = ...,
             ignore_index: int | None = ..., eps: float | None = ..., axis: int = ...,
             validate: bool = ..., n_threads: int | None = ..., split_every: int | None = ...,
             compute: Literal[True] = ...) -> EvaluationResult: ...
@overload
def evaluate(input: Array | ArrayLike, target: Array | ArrayLike, *, from_logits: bool = ...,
             topk: Sequence[int] = ...,
             weight: ArrayLike | None = ..., sample_weight: Array | ArrayLike | None = ...,
             groups: Array | ArrayLike | None = ..., per_class: bool = ...,
             confusion: bool = ..., prior: ArrayLike | None = ...,
             ignore_index: int | None = ..., eps: float | None = ..., axis: int = ...,
             validate: bool = ..., n_threads: int | None = ..., split_every: int | None = ...,
             compute: Literal[False]) -> Delayed: ...
@overload
def evaluate_linear(input: Array | ArrayLike, linear_weight: ArrayLike,
                    target: Array | ArrayLike, *, linear_bias: ArrayLike | None = ...,
                    topk: Sequence[int] = ..., weight: ArrayLike | None = ...,
                    sample_weight: Array | ArrayLike | None = ...,
                    groups: Array | ArrayLike | None = ..., per_class: bool = ...,
                    confusion: bool = ..., prior: ArrayLike | None = ...,
                    ignore_index: int | None = ..., chunk_rows: int | None = ...,
                    n_threads: int | None = ..., split_every: int | None = ...,
                    compute: Literal[True] = ...) -> EvaluationResult: ...
@overload
def evaluate_linear(input: Array | ArrayLike, linear_weight: ArrayLike,
                    target: Array | ArrayLike, *, linear_bias: ArrayLike | None = ...,
                    topk: Sequence[int] = ..., weight: ArrayLike | None = ...,
                    sample_weight: Array | ArrayLike | None = ...,
                    groups: Array | ArrayLike | None = ..., per_class: bool = ...,
                    confusion: bool = ..., prior: ArrayLike | None = ...,
                    ignore_index: int | None = ..., chunk_rows: int | None = ...,
                    n_threads: int | None = ..., split_every: int | None = ...,
                    compute: Literal[False]) -> Delayed: ...
def cross_entropy(input: Array | ArrayLike, target: Array | ArrayLike, *,
                  from_logits: bool = ..., weight: ArrayLike | None = ...,
                  sample_weight: Array | ArrayLike | None = ..., ignore_index: int | None = ...,
                  label_smoothing: float = ..., eps: float | None = ...,
                  reduction: Literal["mean", "sum", "none"] = ..., axis: int = ...,
                  validate: bool = ..., n_threads: int | None = ...,
                  split_every: int | None = ...) -> Array: ...
