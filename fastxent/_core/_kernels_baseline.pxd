# The C-level entry points of the baseline kernel set (see _kernels_api.pxi).
include "_kernels_api.pxi"
