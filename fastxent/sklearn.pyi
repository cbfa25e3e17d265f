"""Type stubs for fastxent.sklearn (needs scikit-learn at run time)."""

from numpy.typing import ArrayLike

__all__: list[str]

def log_loss(y_true: ArrayLike, y_pred: ArrayLike | None = ..., *, normalize: bool = ...,
             sample_weight: ArrayLike | None = ..., labels: ArrayLike | None = ...,
             y_proba: ArrayLike | None = ...) -> float: ...
