"""The kernels: C loops, Cython row functions and drivers, per-ISA builds and their dispatch,
thread counts and the build configuration."""
