"""Choose the kernel set compiled for the best instruction set this CPU supports.

The same kernel source is built once per instruction set (see setup.py). At import the best
set the CPU (and OS) support is loaded; ``FASTXENT_ISA=baseline|avx2|avx512`` forces one.
"""

import importlib
import os

from fastxent._core import _kernels_baseline

ISAS = ("baseline", "avx2", "avx512")


def supported():
    """The instruction sets this CPU and OS support, from baseline up."""
    supported = {"baseline": True,
                 "avx2": _kernels_baseline.cpu_supports_avx2(),
                 "avx512": _kernels_baseline.cpu_supports_avx512()}
    return [isa for isa in ISAS if supported[isa]]


def _built(isa):
    try:
        return importlib.import_module(f"fastxent._core._kernels_{isa}")
    except ImportError:
        return None


def _select():
    forced = os.environ.get("FASTXENT_ISA", "").strip().lower()
    if forced:
        if forced not in ISAS:
            raise ImportError(f"FASTXENT_ISA={forced!r}: expected one of {', '.join(ISAS)}")
        if forced not in supported():
            raise ImportError(f"FASTXENT_ISA={forced!r}: this CPU does not support it")
        module = _built(forced)
        if module is None:
            raise ImportError(f"FASTXENT_ISA={forced!r}: fastxent was built without it")
        return forced, module
    for isa in reversed(supported()):
        module = _built(isa)
        if module is not None:
            return isa, module
    raise AssertionError("unreachable: the baseline kernels are always built")


ISA, kernels = _select()
