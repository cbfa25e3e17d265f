# Kernels compiled for the baseline instruction set; the source is _kernels.pxi.
include "_kernels.pxi"
