# Kernels compiled for the avx2 instruction set; the source is _kernels.pxi.
include "_kernels.pxi"
