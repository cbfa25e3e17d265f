# Kernels compiled for the avx512 instruction set; the source is _kernels.pxi.
include "_kernels.pxi"
