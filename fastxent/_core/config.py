"""What this build of fastxent is: version, OpenMP, threads, instruction set, flags."""

from fastxent._core import dispatch as _dispatch
from fastxent._core.dispatch import kernels
from fastxent._core.threads import effective_n_threads
from fastxent._version import __version__


def config():
    """Return the build and runtime configuration as a dict.

    Returns
    -------
    dict
        ``version``, ``openmp`` (bool), ``default_threads``, ``isa`` (the kernel set in use),
        ``isas_supported`` (by this CPU), ``libmvec`` (vectorised exp/log), ``compiler`` and
        ``cflags`` (of the kernel set in use).
    """
    return {
        "version": __version__,
        "openmp": kernels.openmp_enabled(),
        "default_threads": effective_n_threads(),
        "isa": _dispatch.ISA,
        "isas_supported": _dispatch.supported(),
        "libmvec": kernels.uses_libmvec(),
        **kernels.build_info(),
    }


def show_config():
    """Print :func:`config` one key per line."""
    for key, value in config().items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(value)
        print(f"{key + ':':<17} {value}")
