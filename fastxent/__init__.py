"""fastxent: fast, exact cross-entropy losses and gradients for NumPy arrays on the CPU.

Typed Cython kernels with OpenMP compute the loss and its gradient in one pass, for float32
and float64, in place where asked. See ``README.md`` for the numerical contract.
"""

import os

from fastxent._api.binary import (
    binary_cross_entropy,
    binary_cross_entropy_grad,
    binary_cross_entropy_grad_hess,
    binary_cross_entropy_loss_and_grad,
)
from fastxent._api.linear import linear_cross_entropy, linear_cross_entropy_loss_and_grad
from fastxent._api.multiclass import (
    cross_entropy,
    cross_entropy_grad,
    cross_entropy_grad_hess,
    cross_entropy_loss_and_grad,
)
from fastxent._api.softmax import log_softmax, logsumexp, softmax
from fastxent._core.config import config, show_config
from fastxent._core.threads import effective_n_threads
from fastxent._eval.compare import Comparator, ComparisonResult, McNemar, compare
from fastxent._eval.errors import EvalFileError
from fastxent._eval.evaluate import Evaluator, evaluate, evaluate_linear
from fastxent._eval.files import compare_files, evaluate_files
from fastxent._eval.result import CalibrationBins, EvaluationResult, LossHistogram, SliceTable
from fastxent._version import __version__


def get_include():
    """The directory to put on a Cython build's include path for ``fastxent/capi.pxd``.

    Returns
    -------
    str
        The directory that holds the ``fastxent`` package.
    """
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


__all__ = [
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_grad_hess",
    "binary_cross_entropy_loss_and_grad",
    "CalibrationBins",
    "compare",
    "compare_files",
    "Comparator",
    "ComparisonResult",
    "config",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_grad_hess",
    "cross_entropy_loss_and_grad",
    "effective_n_threads",
    "EvalFileError",
    "evaluate",
    "evaluate_files",
    "evaluate_linear",
    "EvaluationResult",
    "Evaluator",
    "get_include",
    "linear_cross_entropy",
    "linear_cross_entropy_loss_and_grad",
    "log_softmax",
    "logsumexp",
    "LossHistogram",
    "McNemar",
    "show_config",
    "SliceTable",
    "softmax",
]
