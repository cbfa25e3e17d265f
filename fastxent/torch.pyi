"""Type stubs for fastxent.torch (needs PyTorch)."""

from collections.abc import Sequence
from typing import Any

import torch
from numpy.typing import ArrayLike
from torch import Tensor

_Alpha = float | Sequence[float] | ArrayLike | Tensor | None

def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = ...,
                  size_average: bool | None = ..., ignore_index: int = ...,
                  reduce: bool | None = ..., reduction: str = ...,
                  label_smoothing: float = ..., *, z_loss: float = ...,
                  softcap: float | None = ..., focal_gamma: float = ...,
                  focal_alpha: _Alpha = ...) -> Tensor: ...
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = ...,
                                     size_average: bool | None = ..., reduce: bool | None = ...,
                                     reduction: str = ..., pos_weight: Tensor | None = ..., *,
                                     softcap: float | None = ..., focal_gamma: float = ...,
                                     focal_alpha: float | None = ...) -> Tensor: ...
def linear_cross_entropy(input: Tensor, linear_weight: Tensor, target: Tensor, *,
                         linear_bias: Tensor | None = ..., weight: Tensor | None = ...,
                         reduction: str = ..., ignore_index: int | None = ...,
                         label_smoothing: float = ...,
                         options: torch.nn.LinearCrossEntropyOptions | None = ...) -> Tensor: ...

class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    z_loss: float
    softcap: float | None
    focal_gamma: float
    focal_alpha: _Alpha
    def __init__(self, *args: Any, z_loss: float = ..., softcap: float | None = ...,
                 focal_gamma: float = ..., focal_alpha: _Alpha = ...,
                 **kwargs: Any) -> None: ...
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...

class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    softcap: float | None
    focal_gamma: float
    focal_alpha: float | None
    def __init__(self, *args: Any, softcap: float | None = ..., focal_gamma: float = ...,
                 focal_alpha: float | None = ..., **kwargs: Any) -> None: ...
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...

class LinearCrossEntropyLoss(torch.nn.LinearCrossEntropyLoss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...
