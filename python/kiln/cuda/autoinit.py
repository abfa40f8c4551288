"""Stands in for `pycuda.autoinit`, which creates a CUDA context on import. Kiln's runtime uses the CUDA
primary context of the current device, created by the CUDA runtime on first use, so there is nothing to
initialize: importing this module does nothing beyond giving scripts the names they reach for."""
from . import Context

context = Context()  # pycuda.autoinit.context; .synchronize() waits for the device
