"""Kiln from Python: a pure-Python ctypes binding of libkiln's C ABI (no compiler needed).

    import kiln
    engine = kiln.build("mlp.onnx", min_shapes={"input": (1, 1, 28, 28)}, opt_shapes=...,
                        max_shapes=..., save="mlp.engine")
    engine = kiln.load("mlp.engine")
    y = engine.infer({"input": x})          # {output name: numpy array}
    gpu = kiln.build("mlp.onnx", device="cuda", fp16=True, ...)   # CUDA engines take the same calls

`kiln.trt` mirrors the TensorRT Python API and `kiln.cuda` the parts of `pycuda.driver` that TensorRT
scripts use (streams, device memory, copies), so such scripts run with `import kiln.trt as trt` and
`import kiln.cuda as cuda`. libkiln is found via $KILN_LIBRARY, kiln/_lib/, the build tree, or the
loader.
"""
from . import cuda
from ._capi import C_API_VERSION, check_version, lib as _lib
from ._engine import Engine, ExecutionContext, TensorInfo, build, deserialize, load
from .errors import (CorruptEngineError, InternalError, InvalidArgumentError, KilnError, KilnIOError,
                     KilnRuntimeError, NotFoundError, OutOfRangeError, ParseError, UnsupportedError,
                     VersionMismatchError)

__version__ = _lib.kiln_version().decode()
c_api_version = _lib.kiln_c_api_version()
