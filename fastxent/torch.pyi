"""Type stubs for fastxent.torch (needs PyTorch)."""

import torch
from torch import Tensor

def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = ...,
                  size_average: bool | None = ..., ignore_index: int = ...,
                  reduce: bool | None = ..., reduction: str = ...,
                  label_smoothing: float = ...) -> Tensor: ...
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = ...,
                                     size_average: bool | None = ..., reduce: bool | None = ...,
                                     reduction: str = ...,
                                     pos_weight: Tensor | None = ...) -> Tensor: ...

class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...

class BCEWithLogitsLoss(torch.nn.BCEWithLogitsLoss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor: ...
