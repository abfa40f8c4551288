"""Engine and ExecutionContext over the C ABI, plus the simple API (load, build, Engine.infer)."""
import ctypes
import os
import warnings
from collections import namedtuple

import numpy as np

from . import _capi, cuda
from ._capi import check, enc, lib, read_dims
from .errors import KilnError

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
        self._empty = np.empty(64, np.uint8)  # an address for zero-size arrays
        self._io = {}  # mode -> TensorInfo list; an engine's IO tensors never change
        # infer() on numpy at small batches (set_low_latency): (context in low-latency mode, its max rows);
        # None before the first try; False when off or when it cannot be had (an engine the resident kernel
        # cannot serve).
        self._ll = False
        self._last_infer_low_latency = False

    def __del__(self):
        self._ctx = None
        self._ll = None
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
        if mode not in self._io:
            names = [self.tensor_name(i) for i in range(self.num_io_tensors)]
            self._io[mode] = [TensorInfo(n, self.tensor_dtype(n), self.tensor_shape(n)) for n in names
                              if self.tensor_mode(n) == mode]
        return list(self._io[mode])

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
    def target(self):
        """What the engine was built for: the CPU ISA or the GPU."""
        return lib.kiln_engine_target(self._h).decode()

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
    def infer(self, inputs, outputs=None, stream=None):
        """Runs the engine once and returns {output name: tensor}.

        `inputs` is a dict {name: tensor}, or a single tensor when the engine has one input. Tensors are
        either all host numpy arrays or, for CUDA engines, all device tensors:

        - numpy arrays: returns new numpy arrays. CUDA engines are handed the host arrays: the runtime
          copies in and out, large batches in chunks with copies overlapped with compute and
          pageable memory staged into page-locked buffers by worker threads. After set_low_latency(),
          small batches go through the low-latency mode instead (see there).
        - device tensors with __cuda_array_interface__ (PyTorch CUDA tensors, CuPy arrays): bound
          without a copy. `outputs` must then be a dict {name: device tensor} of the output shapes
          (see create_execution_context().get_tensor_shape) to write into; it is returned. The work
          is queued on `stream` (a kiln.cuda.Stream, torch.cuda.Stream or int handle; default: the
          legacy default stream, which PyTorch's default stream is) and waited for.

        Tensors must have the engine's dtype (TypeError otherwise) and be C-contiguous (ValueError
        otherwise); shapes outside the profile raise Kiln's error (a ValueError subclass). Reuses
        one context per Engine, so concurrent callers should each use create_execution_context()."""
        ins = self.inputs
        if not isinstance(inputs, dict):
            if len(ins) != 1:
                raise ValueError(f"engine has {len(ins)} inputs; pass a dict {{name: array}}")
            inputs = {ins[0].name: inputs}
        _check_names("inputs", inputs, {i.name for i in ins})
        if self._ctx is None:
            self._ctx = ExecutionContext(self)
        device = {name: cuda.cuda_array(t) for name, t in inputs.items()}
        if any(a is not None for a in device.values()):
            return self._infer_device(ins, device, outputs, stream)
        if outputs is not None:
            raise TypeError("outputs= takes device tensors to write into; with numpy inputs infer() returns "
                            "new arrays")
        arrays = {info.name: _check_array(info, inputs[info.name]) for info in ins}
        ll = self._low_latency_context(ins, arrays)
        if ll is not None:
            outs = self._bind_host(ll, ins, arrays)  # a bad shape raises here, as on the standard path
            try:
                ll.execute()
                self._last_infer_low_latency = True
                return outs
            except KilnError as e:  # e.g. the resident kernel could not be launched again after idling
                self._ll = False
                warnings.warn(f"kiln: infer() stops using low-latency mode for this engine ({e}); "
                              f"set_low_latency() tries again", RuntimeWarning, stacklevel=2)
        self._last_infer_low_latency = False
        outs = self._bind_host(self._ctx, ins, arrays)
        self._ctx.execute()
        return outs

    def set_low_latency(self, on=True):
        """CUDA engines: infer() on numpy at batches of up to 16 rows (fewer where the network's weights leave
        less shared memory) runs through the low-latency mode on a context of its own
        (ExecutionContext.set_low_latency): a resident kernel answers without a launch or a stream
        synchronize: 18-26 us per infer() at batch 1 on the H100 machine against 48-59 us the standard way
        (GPU run 33; ~9-10 us of it is the round trip, the rest Python). Larger batches
        and device tensors take the standard path. The mode starts at the first small batch; engines the
        resident kernel cannot serve (anything but a chain of dense layers) keep the standard path, which
        last_infer_low_latency shows. While the resident kernel runs it holds 8 SMs, and cudaFree or the
        first launch of a not yet loaded kernel anywhere in the process waits until it ends, which it does
        after 200 ms without requests (KILN_LOW_LATENCY_IDLE_MS; docs/low_latency.md). Its sums run in
        another order, so results agree with the standard path's to rounding, not bit for bit. Off stops it."""
        if on and self.device != "cuda":
            raise TypeError(f"low-latency mode needs a CUDA engine; this engine runs on '{self.device}'")
        if on and self._ll is False:
            if self._ctx is None:
                self._ctx = ExecutionContext(self)
            self._ll = None
        elif not on:
            self._ll = False  # the context's destruction stops its kernel

    @property
    def last_infer_low_latency(self):
        """Whether the last infer() ran through the low-latency mode's resident kernel (set_low_latency())."""
        return self._last_infer_low_latency

    def _low_latency_context(self, ins, arrays):
        """The context that serves infer() on numpy at this batch through the resident kernel, or None."""
        if self._ll is False or len(arrays) != 1:
            return None
        a = next(iter(arrays.values()))
        rows = a.shape[0] if a.ndim else 0
        if self._ll is None:
            if not 1 <= rows <= _INFER_LOW_LATENCY_ROWS[0]:
                return None  # started at the first small batch
            # Every kernel of the standard path loaded before a resident kernel runs (docs/low_latency.md);
            # a bad shape raises here and leaves the mode to the next call.
            self._bind_host(self._ctx, ins, arrays)
            self._ctx.execute()
            self._ll = False
            ctx = ExecutionContext(self)
            for max_rows in _INFER_LOW_LATENCY_ROWS:
                try:
                    ctx.set_low_latency(True, max_rows)
                except KilnError:  # an engine the resident kernel cannot serve (or not at this many rows)
                    continue
                self._ll = (ctx, max_rows)
                break
            if self._ll is False:
                return None
        ctx, max_rows = self._ll
        return ctx if 1 <= rows <= max_rows else None

    def _bind_host(self, ctx, ins, arrays):
        """Sets ctx's shapes (when they changed) and addresses for numpy inputs; returns the new outputs."""
        in_shapes = tuple(a.shape for a in arrays.values())
        # Shapes are set (and output shapes asked for) only when they change: at batch 1 those calls were
        # a third of infer()'s time.
        if ctx._infer_shapes is None or ctx._infer_shapes[0] != in_shapes:
            ctx._infer_shapes = None  # a shape refused half way leaves the context's shapes unknown
            for info in ins:
                ctx.set_input_shape(info.name, arrays[info.name].shape)
            ctx._infer_shapes = (in_shapes, [ctx.get_tensor_shape(o.name) for o in self._infos(MODE_OUTPUT)])
        outs = {o.name: np.empty(shape, dtype=o.dtype)
                for o, shape in zip(self._infos(MODE_OUTPUT), ctx._infer_shapes[1])}
        for name, arr in {**arrays, **outs}.items():
            # An empty array may have no storage; any valid host address does for zero bytes.
            ctx.set_tensor_address(name, arr.ctypes.data or self._empty.ctypes.data)
        return outs

    def _infer_device(self, ins, device, outputs, stream):
        if self.device != "cuda":
            raise TypeError(f"device tensors need a CUDA engine; this engine runs on '{self.device}' (pass numpy "
                            f"arrays)")
        ctx = self._ctx
        ctx._infer_shapes = None  # the shapes set here are not what the host path remembers
        self._last_infer_low_latency = False
        for info in ins:
            a = device[info.name]
            if a is None:
                raise TypeError(f"input '{info.name}' is host memory while other inputs are device tensors; "
                                f"pass all inputs one way")
            _check_device(info, a, f"input '{info.name}'")
            if len(a.shape) != len(info.shape):
                raise ValueError(f"input '{info.name}': rank {len(a.shape)} {a.shape} does not match the "
                                 f"engine's {len(info.shape)} {info.shape}")
            ctx.set_input_shape(info.name, a.shape)
        if not isinstance(outputs, dict):
            raise TypeError("device inputs need outputs={name: device tensor} to write into (Kiln does not "
                            "allocate another library's tensors); shapes from get_tensor_shape")
        _check_names("outputs", outputs, {o.name for o in self.outputs})
        bind = {name: a.ptr for name, a in device.items()}
        for info in self.outputs:
            a = cuda.cuda_array(outputs[info.name])
            if a is None:
                raise TypeError(f"output '{info.name}': expected a device tensor with __cuda_array_interface__, "
                                f"got {type(outputs[info.name]).__name__}")
            _check_device(info, a, f"output '{info.name}'")
            want = ctx.get_tensor_shape(info.name)
            if a.shape != want:
                raise ValueError(f"output '{info.name}': shape {a.shape} does not match {want}")
            bind[info.name] = a.ptr
        for name, ptr in bind.items():
            ctx.set_tensor_address(name, ptr)
        handle = cuda.stream_handle(stream)
        ctx.enqueue(handle)
        check(lib.kiln_gpu_stream_synchronize(handle))
        return outputs


# Engine.set_low_latency: the largest batch infer() sends to the resident kernel, first choice first (it takes
# up to 16 rows where its shared memory holds them).
_INFER_LOW_LATENCY_ROWS = (16, 8, 4, 1)


def _check_names(what, given, names):
    unknown = set(given) - names
    if unknown:
        raise ValueError(f"not {what} of this engine: {sorted(unknown)}; {what} are {sorted(names)}")
    missing = names - set(given)
    if missing:
        raise ValueError(f"missing {what}: {sorted(missing)}")


def _check_array(info, arr):
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "__dlpack__"):
            raise TypeError(f"input '{info.name}': {type(arr).__name__} has __dlpack__ but no "
                            f"__cuda_array_interface__; Kiln takes numpy arrays and device tensors with "
                            f"__cuda_array_interface__ (PyTorch CUDA tensors, CuPy arrays); for a CPU "
                            f"tensor pass numpy (e.g. tensor.numpy())")
        raise TypeError(f"input '{info.name}': expected a numpy.ndarray or a device tensor with "
                        f"__cuda_array_interface__, got {type(arr).__name__}")
    if arr.dtype != info.dtype:
        raise TypeError(f"input '{info.name}': dtype {arr.dtype} does not match the engine's {info.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"input '{info.name}': array is not C-contiguous (use numpy.ascontiguousarray)")
    if arr.ndim != len(info.shape):
        raise ValueError(f"input '{info.name}': rank {arr.ndim} {arr.shape} does not match the engine's "
                         f"{len(info.shape)} {info.shape}")
    return arr


def _check_device(info, a, what):
    if a.dtype != info.dtype:
        raise TypeError(f"{what}: dtype {a.dtype} does not match the engine's {info.dtype}")
    if not a.c_contiguous:
        raise ValueError(f"{what}: device tensor is not C-contiguous (call .contiguous())")


class ExecutionContext:
    """Shapes, tensor addresses and scratch memory for one concurrent user of an engine."""

    def __init__(self, engine):
        self._engine = engine  # keeps the engine alive
        h = ctypes.c_void_p()
        check(lib.kiln_context_create(engine._h, ctypes.byref(h)))
        self._h = h
        self._infer_shapes = None  # Engine.infer(): (input shapes, output shapes) last set, None if unknown

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
        """CUDA engines: queues the work on stream (kiln.cuda.Stream, int handle, None/0 = legacy default
        stream) and returns. CPU engines: stream must be 0/None; runs synchronously."""
        check(lib.kiln_context_enqueue(self._h, cuda.stream_handle(stream) or None))

    def set_cuda_graph(self, on):
        """CUDA engines: capture the layers into a CUDA graph per shape and replay it (needs a created
        stream, not the legacy default one). No effect on CPU engines."""
        check(lib.kiln_context_set_cuda_graph(self._h, 1 if on else 0))

    def set_low_latency(self, on, max_rows=1):
        """CUDA engines: a resident kernel serves execute() for batches of up to max_rows rows, reading
        and writing host memory (numpy arrays bound with set_tensor_address(name, a.ctypes.data)): no
        launch and no stream synchronize per call. Raises Kiln's error (kUnsupported) for engines it
        cannot serve; off (or deleting the context) stops the kernel."""
        check(lib.kiln_context_set_low_latency(self._h, 1 if on else 0, int(max_rows)))

    @property
    def host_io_f16_inputs(self):
        """CUDA engines: how many inputs the last execute() on host memory converted on the host while
        staging: to float16 (an FP16 engine rounds its float32 input to float16 anyway: half the bytes cross
        PCIe) or to int8 (an INT8 engine quantizes it first: a quarter; KILN_HOST_IO_QUANTIZE=0 turns that off), with the same result;
        KILN_HOST_IO_CAST=0 turns it off. 0 = none; always 0 on CPU engines. (Named for the first form.)"""
        n = ctypes.c_int(0)
        check(lib.kiln_context_host_io_f16_inputs(self._h, ctypes.byref(n)))
        return n.value


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


def build(onnx_path, fp16=False, min_shapes=None, opt_shapes=None, max_shapes=None, save=None, device="cpu",
          tf32=True, timing_cache=None, int8=False, calib_data=None, calib_cache=None, calib_algo=None, best=False,
          bf16=False):
    """Builds an engine from an ONNX file and returns it (also written to `save` when given).

    device: "cpu" or "cuda" (built for the GPU of this machine). fp16: layers may run in FP16 (CUDA
    only; IO stays FP32). tf32: FP32 layers may use TF32 tensor cores (CUDA; on by default, as in
    TensorRT), and lets the CPU fused MLP run in split BF16 where KILN_FUSED_MLP_TACTIC=bf16x3 asks (~1e-5 of FP32). timing_cache: file that CUDA tactic timings are read from and added to.
    int8: GEMM layers in INT8, scales from calib_cache (a TensorRT-format file, used when it exists, else
    written) or by calibrating on calib_data (IDX/.npy/raw files, comma-separated) with calib_algo
    ("percentile" by default, "entropy", "minmax"). best: per layer INT8 or float, whichever is faster.
    bf16: dense layer chains run in BF16 (CPU only; AMX or AVX512_BF16 where present; IO stays FP32).
    Profiles: {input name: shape} dicts; an input listed in any of them must be listed in all three."""
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
    arr = lambda ctype, v: (ctype * max(len(v), 1))(*v)  # noqa: E731
    o = _capi.BuildOptions()
    lib.kiln_build_options_init(ctypes.byref(o))
    keep = [arr(ctypes.c_char_p, [enc(n) for n in names]), arr(ctypes.c_int, ranks),
            arr(ctypes.c_int64, mins), arr(ctypes.c_int64, opts), arr(ctypes.c_int64, maxs)]  # alive for the call
    o.device, o.fp16, o.tf32 = enc(device), int(bool(fp16)), int(bool(tf32))
    o.timing_cache_file = enc(os.fspath(timing_cache)) if timing_cache is not None else None
    o.int8, o.best, o.bf16 = int(bool(int8)), int(bool(best)), int(bool(bf16))
    o.calib_data = enc(str(calib_data)) if calib_data is not None else None
    o.calib_cache = enc(os.fspath(calib_cache)) if calib_cache is not None else None
    o.calib_algo = enc(calib_algo) if calib_algo is not None else None
    o.num_profiles = len(names)
    o.profile_names, o.profile_ranks, o.profile_min, o.profile_opt, o.profile_max = keep
    data, size = ctypes.c_void_p(), ctypes.c_size_t()
    check(lib.kiln_build_engine(enc(os.fspath(onnx_path)), ctypes.byref(o), ctypes.byref(data), ctypes.byref(size)))
    try:
        blob = ctypes.string_at(data, size.value)
    finally:
        lib.kiln_free(data)
    if save is not None:
        with open(save, "wb") as f:
            f.write(blob)
    return deserialize(blob)
