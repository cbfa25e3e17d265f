"""The Python layer of the losses: options, validation and the calls into the kernels."""
