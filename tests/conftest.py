"""Make ``python -m pytest`` test the installed fastxent, as plain ``pytest`` does.

``python -m pytest`` puts the working directory first on ``sys.path``. From the root of a
checkout installed regularly (``pip install .``), that directory's ``fastxent`` holds the Python
sources but no compiled kernels, and would shadow the installed package. When the checkout has
no kernels, the checkout's directory is taken off ``sys.path`` before any test imports
fastxent; an editable install (kernels built in the checkout) is left alone.
"""

import glob
import os
import sys

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _checkout_has_kernels():
    return bool(glob.glob(os.path.join(_CHECKOUT, "fastxent", "_kernels_baseline*.so"))
                or glob.glob(os.path.join(_CHECKOUT, "fastxent", "_kernels_baseline*.pyd")))


if "fastxent" not in sys.modules and not _checkout_has_kernels():
    sys.path[:] = [p for p in sys.path
                   if os.path.abspath(p or os.curdir) != _CHECKOUT]
