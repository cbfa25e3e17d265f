"""Type stubs for fastxent.capi: its C functions are for Cython (see capi.pxd); Python sees
one helper."""

def note_threads_started() -> None: ...
