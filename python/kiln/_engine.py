"""Engine and ExecutionContext over the C ABI, plus the simple API (load, build, Engine.infer)."""
import ctypes
import os
from collections import namedtuple

import numpy as np

from . import _capi
from ._capi import check, enc, lib, read_dims
from .errors import KilnError, UnsupportedError

# ONNX dtype codes (kiln::DataType) <-> numpy.
ONNX_TO_NUMPY = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_,
                 10: np.float16, 11: np.float64}

TensorInfo = namedtuple("TensorInfo", "name dtype shape")
MODE_INPUT, MODE_OUTPUT = 1, 2


class _Runtime:
    """Owns a kiln_runtime_t."""

    def __init__(self):
        h = ctypes.c_void_p()
        check(lib.kiln_runtime_create(ctypes.byref(h)))
        self._h = h

    _destroy = lib.kiln_runtime_destroy  # bound here so __del__ works during interpreter shutdown

    def close(self):
        if getattr(self, "_h", None):
            self._destroy(self._h)
            self._h = None

    __del__ = close

    def load(self, path):
        h = ctypes.c_void_p()
        check(lib.kiln_engine_load(self._h, enc(os.fspath(path)), ctypes.byref(h)))
        return Engine(h)

    def deserialize(self, data):
        data = bytes(data)
        h = ctypes.c_void_p()
        check(lib.kiln_engine_deserialize(self._h, data, len(data), ctypes.byref(h)))
        return Engine(h)


class Engine:
    """A deserialized engine: IO tensor descriptions, metadata, execution contexts and infer()."""

    _destroy = lib.kiln_engine_destroy

    def __init__(self, handle):
        self._h = handle
        self._ctx = None  # lazily created context for infer(); so infer() is not thread-safe

    def __del__(self):
        self._ctx = None
        if getattr(self, "_h", None):
            self._destroy(self._h)
            self._h = None

    # -- description --
    @property
    def num_io_tensors(self):
        return lib.kiln_engine_num_io_tensors(self._h)

    def tensor_name(self, index):
        name = lib.kiln_engine_tensor_name(self._h, index)
        if name is None:
            raise IndexError(f"IO tensor index {index} out of range [0, {self.num_io_tensors})")
        return name.decode()

    def tensor_mode(self, name):
        return lib.kiln_engine_tensor_mode(self._h, enc(name))

    def tensor_dtype(self, name):
        """numpy dtype of an IO tensor."""
        code = lib.kiln_engine_tensor_dtype(self._h, enc(name))
        if code not in ONNX_TO_NUMPY:
            raise KilnError(f"'{name}' is not an IO tensor of this engine")
        return np.dtype(ONNX_TO_NUMPY[code])

    def tensor_shape(self, name):
        """Static shape; -1 marks dynamic dims."""
        return read_dims(lib.kiln_engine_tensor_shape, self._h, enc(name))

    def profile_shape(self, name):
        """(min, opt, max) shapes of an input's profile."""
        bufs = [(ctypes.c_int64 * _capi.MAX_RANK)() for _ in range(3)]
        rank = ctypes.c_int()
        check(lib.kiln_engine_profile_shape(self._h, enc(name), *bufs, _capi.MAX_RANK, ctypes.byref(rank)))
        return tuple(tuple(b[i] for i in range(rank.value)) for b in bufs)

    def _infos(self, mode):
        names = [self.tensor_name(i) for i in range(self.num_io_tensors)]
        return [TensorInfo(n, self.tensor_dtype(n), self.tensor_shape(n)) for n in names
                if self.tensor_mode(n) == mode]

    @property
    def inputs(self):
        return self._infos(MODE_INPUT)

    @property
    def outputs(self):
        return self._infos(MODE_OUTPUT)

    @property
    def device(self):
        return lib.kiln_engine_device(self._h).decode()

    @property
    def metadata(self):
        out = {}
        for i in range(lib.kiln_engine_num_metadata(self._h)):
            key = lib.kiln_engine_metadata_key(self._h, i)
            out[key.decode()] = lib.kiln_engine_metadata(self._h, key).decode()
        return out

    def create_execution_context(self):
        return ExecutionContext(self)

    # -- one call --
    def infer(self, inputs):
        """Runs the engine on host numpy arrays; returns {output name: new numpy array}.

        `inputs` is a dict {name: array}, or a single array when the engine has one input. Arrays must
        have the engine's dtype (TypeError otherwise) and be C-contiguous (ValueError otherwise);
        shapes outside the profile raise Kiln's error (a ValueError subclass). Reuses one context per
        Engine, so concurrent callers should each use create_execution_context()."""
        ins = self.inputs
        if not isinstance(inputs, dict):
            if len(ins) != 1:
                raise ValueError(f"engine has {len(ins)} inputs; pass a dict {{name: array}}")
            inputs = {ins[0].name: inputs}
        names = {i.name for i in ins}
        unknown = set(inputs) - names
        if unknown:
            raise ValueError(f"not inputs of this engine: {sorted(unknown)}; inputs are {sorted(names)}")
        missing = names - set(inputs)
        if missing:
            raise ValueError(f"missing inputs: {sorted(missing)}")
        if self._ctx is None:
            self._ctx = ExecutionContext(self)
        ctx = self._ctx
        for info in ins:
            arr = _check_array(info, inputs[info.name])
            ctx.set_input_shape(info.name, arr.shape)
            ctx.set_tensor_address(info.name, arr.ctypes.data)
        outs = {}
        for info in self.outputs:
            out = np.empty(ctx.get_tensor_shape(info.name), dtype=info.dtype)
            ctx.set_tensor_address(info.name, out.ctypes.data)
            outs[info.name] = out
        ctx.execute()
        return outs


def _check_array(info, arr):
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"input '{info.name}': expected a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype != info.dtype:
        raise TypeError(f"input '{info.name}': dtype {arr.dtype} does not match the engine's {info.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"input '{info.name}': array is not C-contiguous (use numpy.ascontiguousarray)")
    if arr.ndim != len(info.shape):
        raise ValueError(f"input '{info.name}': rank {arr.ndim} {arr.shape} does not match the engine's "
                         f"{len(info.shape)} {info.shape}")
    return arr


class ExecutionContext:
    """Shapes, tensor addresses and scratch memory for one concurrent user of an engine."""

    def __init__(self, engine):
        self._engine = engine  # keeps the engine alive
        h = ctypes.c_void_p()
        check(lib.kiln_context_create(engine._h, ctypes.byref(h)))
        self._h = h

    _destroy = lib.kiln_context_destroy

    def __del__(self):
        if getattr(self, "_h", None):
            self._destroy(self._h)
            self._h = None

    @property
    def engine(self):
        return self._engine

    def set_input_shape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        check(lib.kiln_context_set_input_shape(self._h, enc(name), dims, len(shape)))
        return True

    def get_tensor_shape(self, name):
        return read_dims(lib.kiln_context_tensor_shape, self._h, enc(name))

    def set_tensor_address(self, name, address):
        check(lib.kiln_context_set_tensor_address(self._h, enc(name), ctypes.c_void_p(int(address))))
        return True

    def set_num_threads(self, threads):
        check(lib.kiln_context_set_num_threads(self._h, int(threads)))

    def execute(self):
        check(lib.kiln_context_execute(self._h))

    def enqueue(self, stream=0):
        check(lib.kiln_context_enqueue(self._h, ctypes.c_void_p(int(stream)) if stream else None))


_runtime = None


def _default_runtime():
    global _runtime
    if _runtime is None:
        _runtime = _Runtime()
    return _runtime


def load(path):
    """Loads an engine file."""
    return _default_runtime().load(path)


def deserialize(data):
    """Loads an engine from bytes."""
    return _default_runtime().deserialize(data)


def build(onnx_path, fp16=False, min_shapes=None, opt_shapes=None, max_shapes=None, save=None, device="cpu"):
    """Builds an engine from an ONNX file and returns it (also written to `save` when given).

    Profiles: {input name: shape} dicts; an input listed in any of them must be listed in all three."""
    if fp16:
        raise UnsupportedError("fp16 needs the CUDA backend (not built yet); build with fp16=False", 3)
    min_shapes, opt_shapes, max_shapes = min_shapes or {}, opt_shapes or {}, max_shapes or {}
    names = sorted(set(min_shapes) | set(opt_shapes) | set(max_shapes))
    ranks, mins, opts, maxs = [], [], [], []
    for n in names:
        if not (n in min_shapes and n in opt_shapes and n in max_shapes):
            raise ValueError(f"profile for '{n}' needs min_shapes, opt_shapes and max_shapes")
        mn, op, mx = (tuple(int(d) for d in s[n]) for s in (min_shapes, opt_shapes, max_shapes))
        if not len(mn) == len(op) == len(mx):
            raise ValueError(f"profile for '{n}': min/opt/max ranks differ: {mn} {op} {mx}")
        ranks.append(len(mn))
        mins += mn
        opts += op
        maxs += mx
    c_names = (ctypes.c_char_p * max(len(names), 1))(*[enc(n) for n in names])
    c_ranks = (ctypes.c_int * max(len(ranks), 1))(*ranks)
    arr = lambda v: (ctypes.c_int64 * max(len(v), 1))(*v)  # noqa: E731
    data, size = ctypes.c_void_p(), ctypes.c_size_t()
    check(lib.kiln_build_engine_from_file(enc(os.fspath(onnx_path)), enc(device), len(names), c_names, c_ranks,
                                          arr(mins), arr(opts), arr(maxs), ctypes.byref(data), ctypes.byref(size)))
    try:
        blob = ctypes.string_at(data, size.value)
    finally:
        lib.kiln_free(data)
    if save is not None:
        with open(save, "wb") as f:
            f.write(blob)
    return deserialize(blob)
