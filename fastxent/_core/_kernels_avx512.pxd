# The C-level entry points of the avx512 kernel set (see _kernels_api.pxi).
include "_kernels_api.pxi"
