"""A TensorRT-shaped facade over Kiln, so scripts written against `tensorrt` run with
`import kiln.trt as trt`. Like TensorRT, failures return None/False and are reported through the
Logger (deserialize_cuda_engine, set_input_shape, execute_async_v3); the Kiln message is kept too
(`trt.last_error()`).

CUDA engines (built with device="cuda"): tensor addresses are device pointers: ints (as from
`int(cuda.mem_alloc(n))` with `import kiln.cuda as cuda`, the pycuda stand-in), kiln.cuda
DeviceAllocations, or device tensors with __cuda_array_interface__ (PyTorch CUDA tensors, CuPy arrays;
checked for contiguity and dtype). execute_async_v3(stream_handle) queues the work on that CUDA stream.

CPU engines: tensor addresses are host pointers (e.g. numpy `arr.ctypes.data`) and the stream
handle must be 0; execute_async_v3 runs synchronously.
"""
import enum
import sys

import numpy as np

from . import _engine, cuda
from ._capi import lib
from .errors import KilnError

__version__ = lib.kiln_version().decode()

_last_error = ""


def last_error():
    """Kiln's message for the last call of this module that returned None/False."""
    return _last_error


class Logger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self, min_severity=Severity.WARNING):
        self.min_severity = Logger.Severity(min_severity)

    def log(self, severity, msg):
        if Logger.Severity(severity) <= self.min_severity:
            print(f"[kiln] [{Logger.Severity(severity).name}] {msg}", file=sys.stderr)


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    # TensorRT's member names; values are Kiln's (ONNX) codes.
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    INT32 = 6
    INT64 = 7
    BOOL = 9
    HALF = 10
    DOUBLE = 11


def nptype(dtype):
    """numpy type of a DataType, like tensorrt.nptype."""
    return _engine.ONNX_TO_NUMPY[int(DataType(dtype))]


def _report(logger, err):
    global _last_error
    _last_error = str(err)
    if logger is not None:
        logger.log(Logger.ERROR, _last_error)


class Runtime:
    def __init__(self, logger=None):
        self.logger = logger
        self._rt = _engine._Runtime()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False  # engines outlive the runtime (they hold their own references)

    def deserialize_cuda_engine(self, serialized):
        """ICudaEngine or None (the error goes to the logger), as in TensorRT."""
        try:
            return ICudaEngine(self._rt.deserialize(serialized), self.logger)
        except KilnError as e:
            _report(self.logger, e)
            return None


class ICudaEngine:
    def __init__(self, engine, logger):
        self._engine = engine
        self._logger = logger

    @property
    def num_io_tensors(self):
        return self._engine.num_io_tensors

    def get_tensor_name(self, index):
        return self._engine.tensor_name(index)

    def get_tensor_mode(self, name):
        return TensorIOMode(self._engine.tensor_mode(name))

    def get_tensor_dtype(self, name):
        return DataType(lib.kiln_engine_tensor_dtype(self._engine._h, name.encode()))

    def get_tensor_shape(self, name):
        return tuple(self._engine.tensor_shape(name))

    def get_tensor_profile_shape(self, name, profile_index=0):
        if profile_index != 0:
            raise IndexError("Kiln engines have one optimization profile")
        return list(self._engine.profile_shape(name))

    def create_execution_context(self):
        return IExecutionContext(self, self._logger)

    @property
    def kiln_engine(self):
        """The underlying kiln.Engine (infer(), metadata, ...)."""
        return self._engine


class IExecutionContext:
    def __init__(self, engine, logger):
        self.engine = engine
        self._logger = logger
        self._ctx = engine._engine.create_execution_context()

    def _try(self, fn, *args):
        try:
            fn(*args)
            return True
        except KilnError as e:
            _report(self._logger, e)
            return False

    def set_input_shape(self, name, shape):
        return self._try(self._ctx.set_input_shape, name, shape)

    def get_tensor_shape(self, name):
        return tuple(self._ctx.get_tensor_shape(name))

    def set_tensor_address(self, name, address):
        """address: an int pointer, a kiln.cuda.DeviceAllocation, or (CUDA engines) a device tensor with
        __cuda_array_interface__. TypeError/ValueError for a tensor of the wrong dtype or layout, as
        TensorRT's bindings raise for bad arguments; False (logged) when Kiln refuses the address."""
        arr = cuda.cuda_array(address)
        if arr is not None:
            if self.engine.kiln_engine.device != "cuda":
                raise ValueError(f"'{name}': a device tensor cannot feed a CPU engine (bind host memory)")
            want = self.engine.kiln_engine.tensor_dtype(name)
            if arr.dtype != want:
                raise TypeError(f"'{name}': device tensor dtype {arr.dtype} does not match the engine's {want}")
        return self._try(self._ctx.set_tensor_address, name, cuda.device_pointer(address))

    def execute_async_v3(self, stream_handle):
        """CUDA engines: queues the work on the stream (an int cudaStream_t such as kiln.cuda.Stream().handle,
        or a stream object) and returns. CPU engines: runs synchronously; stream_handle must be 0.
        True on success."""
        return self._try(self._ctx.enqueue, stream_handle)

    def set_cuda_graph(self, on):
        """Kiln extension (trtexec --useCudaGraph): replay the layers as a CUDA graph per shape."""
        return self._try(self._ctx.set_cuda_graph, on)

    def execute_v2(self, bindings=None):
        if bindings is not None:
            raise KilnError("execute_v2 with bindings is not supported; use set_tensor_address")
        return self._try(self._ctx.execute)
