"""A process's resident memory and its peak, from Linux's ``/proc/self``, with a peak that can
be reset, so that a measurement sees one call's memory and not what came before it."""


def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024          # the kernel writes kB
    raise OSError(f"/proc/self/status has no {field}")


def resident_bytes():
    """The process's resident memory now (``VmRSS``)."""
    return _status_bytes("VmRSS")


def peak_bytes():
    """The process's peak resident memory since the last ``reset_peak`` (``VmHWM``)."""
    return _status_bytes("VmHWM")


def reset_peak():
    """Set the peak resident memory to the resident memory now (Linux 4.0 and later)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_growth(call):
    """How far the peak resident memory rose above the resident memory during `call()`.

    Parameters
    ----------
    call : callable
        Called once, without arguments.

    Returns
    -------
    int
        Bytes.
    """
    reset_peak()
    before = resident_bytes()
    call()
    return peak_bytes() - before
