"""Make the tests use the installed fastxent, however pytest is started.

From the root of a checkout installed regularly (``pip install .``), the checkout's
``fastxent`` holds the Python sources but no compiled kernels, and would shadow the installed
package wherever the working directory comes first on ``sys.path``: in ``python -m pytest``
itself, and in every ``python -c`` subprocess a test starts. When the checkout has no
kernels, its directory is taken off ``sys.path`` before any test imports fastxent, and the
tests run from a temporary working directory. An editable install (kernels built in the
checkout) is left alone.
"""

import glob
import os
import sys

import pytest

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _checkout_has_kernels():
    kernels = os.path.join(_CHECKOUT, "fastxent", "_core")
    return bool(glob.glob(os.path.join(kernels, "_kernels_baseline*.so"))
                or glob.glob(os.path.join(kernels, "_kernels_baseline*.pyd")))


if "fastxent" not in sys.modules and not _checkout_has_kernels():
    sys.path[:] = [p for p in sys.path
                   if os.path.abspath(p or os.curdir) != _CHECKOUT]


@pytest.fixture(autouse=True, scope="session")
def _outside_a_checkout_without_kernels(tmp_path_factory):
    """Run the session from a temporary directory when the checkout has no kernels."""
    if _checkout_has_kernels():
        yield
        return
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(previous)
