"""Type stubs for fastxent.capi: its functions are C functions for Cython (see capi.pxd);
Python sees none."""
