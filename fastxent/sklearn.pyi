"""Type stubs for fastxent.sklearn (needs scikit-learn at run time).

The signature is scikit-learn >= 1.9's; with an older scikit-learn the runtime one is
``log_loss(y_true, y_pred, *, normalize, sample_weight, labels)``, as scikit-learn's."""

from numpy.typing import ArrayLike

def log_loss(y_true: ArrayLike, y_proba: ArrayLike | None = ..., *, normalize: bool = ...,
             sample_weight: ArrayLike | None = ..., labels: ArrayLike | None = ...,
             y_pred: ArrayLike | str = ...) -> float: ...
