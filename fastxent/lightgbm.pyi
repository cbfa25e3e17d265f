from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[np.floating[Any]]
_Objective = Callable[[Any, Any], tuple[_Array, _Array]]

HESS_FLOOR: float

def softmax_objective(num_class: int, **options: Any) -> _Objective: ...
def logistic_objective(**options: Any) -> _Objective: ...
def softmax_metric(name: str = ...) -> Callable[[Any, Any], tuple[str, float, bool]]: ...
