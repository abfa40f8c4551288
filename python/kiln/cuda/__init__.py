"""GPU plumbing shaped like `pycuda.driver`, over libkiln's kiln_gpu_* C entry points, so that TensorRT
scripts run with `import kiln.cuda as cuda` (and `import kiln.cuda.autoinit`):

    stream = cuda.Stream()
    d_in = cuda.mem_alloc(x.nbytes)                 # DeviceAllocation; int(d_in) is the device pointer
    cuda.memcpy_htod_async(d_in, x, stream)         # x: C-contiguous numpy array
    context.set_tensor_address("input", int(d_in))  # kiln.trt
    context.execute_async_v3(stream.handle)
    cuda.memcpy_dtoh_async(y, d_out, stream)
    stream.synchronize()

Pointers and streams are plain CUDA ones, so they mix with PyTorch and CuPy in the same process.
Importing works everywhere; without a usable GPU (or in a libkiln built without CUDA) every call raises
kiln.UnsupportedError ("no usable GPU: ..."). is_available() asks without raising.
"""
import ctypes
from collections import namedtuple

import numpy as np

from .._capi import check, lib

__all__ = ["Context", "DeviceAllocation", "Stream", "device_pointer", "describe_device", "is_available",
           "mem_alloc", "memcpy_dtod_async", "pagelocked_empty", "memcpy_dtoh", "memcpy_dtoh_async", "memcpy_htod",
           "memcpy_htod_async"]


def is_available():
    """True when libkiln has the CUDA backend and a usable GPU is present."""
    return bool(lib.kiln_gpu_available())


def describe_device():
    """The GPU (name, compute capability, SMs, CUDA version), or why none can be used."""
    return lib.kiln_gpu_describe_device().decode()


class Stream:
    """A non-blocking CUDA stream (cudaStream_t), destroyed with the object. `.handle` is its int value,
    what execute_async_v3 takes."""

    _destroy = lib.kiln_gpu_stream_destroy  # bound here so __del__ works during interpreter shutdown

    def __init__(self, flags=0):
        h = ctypes.c_void_p()
        check(lib.kiln_gpu_stream_create(ctypes.byref(h)))
        self._h = h.value

    @property
    def handle(self):
        return self._h

    def synchronize(self):
        check(lib.kiln_gpu_stream_synchronize(self._h))

    def __del__(self):
        if getattr(self, "_h", None):
            self._destroy(self._h)  # errors cannot be raised from __del__; CUDA reports them later
            self._h = None


class DeviceAllocation:
    """Device memory from mem_alloc(), freed by free() or when garbage collected. int() (and any API
    taking a pointer int) gives the device address."""

    _free = lib.kiln_gpu_free

    def __init__(self, ptr, size):
        self._ptr, self.size = ptr, size

    def __int__(self):
        if not self._ptr:
            raise ValueError("DeviceAllocation was freed")
        return self._ptr

    __index__ = __int__

    def free(self):
        if getattr(self, "_ptr", None):
            ptr, self._ptr = self._ptr, None
            check(self._free(ptr))

    def __del__(self):
        if getattr(self, "_ptr", None):
            self._free(self._ptr)
            self._ptr = None

    def __repr__(self):
        return f"<kiln.cuda.DeviceAllocation 0x{self._ptr or 0:x}, {self.size} bytes>"


def mem_alloc(nbytes):
    """nbytes of device memory (256-byte aligned) as a DeviceAllocation."""
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"mem_alloc: negative size {nbytes}")
    p = ctypes.c_void_p()
    check(lib.kiln_gpu_malloc(nbytes, ctypes.byref(p)))
    return DeviceAllocation(p.value, nbytes)


class _PinnedBuffer:
    """Owns page-locked host memory; numpy arrays from pagelocked_empty keep it alive as their base."""

    _free = lib.kiln_gpu_host_free

    def __init__(self, nbytes):
        p = ctypes.c_void_p()
        check(lib.kiln_gpu_host_alloc(max(1, nbytes), ctypes.byref(p)))
        self.ptr, self.nbytes = p.value, nbytes

    def __del__(self):
        if getattr(self, "ptr", None):
            self._free(self.ptr)
            self.ptr = None


def pagelocked_empty(shape, dtype=np.float32):
    """An uninitialized numpy array in page-locked (pinned) host memory, as pycuda's pagelocked_empty:
    copies from and to it run at full PCIe speed and memcpy_*_async returns before they finish (synchronize
    the stream before reading or reusing it). The memory is freed with the last array viewing it."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = _PinnedBuffer(nbytes)
    raw = (ctypes.c_char * max(1, nbytes)).from_address(buf.ptr)
    raw._kiln_pinned = buf  # the ctypes array keeps the allocation; numpy keeps the ctypes array
    return np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)


class Context:
    """pycuda's Context, reduced to what scripts call: Kiln uses the CUDA primary context of the current
    device, so there is nothing to create, push or pop."""

    @staticmethod
    def synchronize():
        """Waits for all work on the device (cudaDeviceSynchronize)."""
        check(lib.kiln_gpu_device_synchronize())


# -- device arrays of other libraries (PyTorch, CuPy, Numba): the CUDA Array Interface --

CudaArray = namedtuple("CudaArray", "ptr shape dtype c_contiguous nbytes stream")


def cuda_array(obj):
    """A CudaArray describing obj's __cuda_array_interface__, or None when obj has none. TypeError when
    the interface cannot be read (e.g. a PyTorch tensor that requires grad)."""
    try:
        cai = obj.__cuda_array_interface__
    except AttributeError:
        return None
    except Exception as e:  # torch raises RuntimeError for tensors that require grad
        raise TypeError(f"cannot read __cuda_array_interface__ of {type(obj).__name__}: {e}") from e
    shape = tuple(int(d) for d in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    contiguous = True
    if strides is not None:
        expect = dtype.itemsize
        for d, s in zip(reversed(shape), reversed(tuple(strides))):
            if d > 1 and s != expect:  # a dimension of extent 1 may have any stride
                contiguous = False
            expect *= d
    return CudaArray(int(cai["data"][0]), shape, dtype, contiguous, int(np.prod(shape)) * dtype.itemsize,
                     cai.get("stream"))


def device_pointer(obj):
    """The device address of an int, a DeviceAllocation, anything with __int__/__index__ (pycuda's
    DeviceAllocation), or an object with __cuda_array_interface__ (which must be C-contiguous)."""
    if isinstance(obj, DeviceAllocation):
        return int(obj)
    arr = cuda_array(obj)
    if arr is not None:
        if not arr.c_contiguous:
            raise ValueError(f"{type(obj).__name__} is not C-contiguous (call .contiguous() or copy it)")
        return arr.ptr
    if isinstance(obj, np.ndarray):
        raise TypeError("a numpy array is host memory; expected a device pointer (int, DeviceAllocation, or an "
                        "object with __cuda_array_interface__)")
    try:
        return int(obj)
    except (TypeError, ValueError) as e:
        raise TypeError(f"expected a device pointer (int, DeviceAllocation, or an object with "
                        f"__cuda_array_interface__), got {type(obj).__name__}") from e


def _capacity(obj):
    """Bytes known to be behind a device pointer object, or None (a bare int)."""
    if isinstance(obj, DeviceAllocation):
        return obj.size
    arr = cuda_array(obj)
    return None if arr is None else arr.nbytes


def stream_handle(stream):
    """A cudaStream_t int from None (legacy default stream), an int, a Stream, or an object with
    .handle (pycuda) or .cuda_stream (torch.cuda.Stream)."""
    if stream is None:
        return 0
    for attr in ("handle", "cuda_stream"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    try:
        return int(stream)
    except (TypeError, ValueError) as e:
        raise TypeError(f"expected a stream (Stream, int handle or None), got {type(stream).__name__}") from e


def _host(arr, what, writable=False):
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{what}: expected a numpy.ndarray, got {type(arr).__name__}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{what}: array is not C-contiguous (use numpy.ascontiguousarray)")
    if writable and not arr.flags.writeable:
        raise ValueError(f"{what}: array is read-only")
    return arr


def _device(obj, nbytes, what):
    ptr = device_pointer(obj)
    cap = _capacity(obj)
    if cap is not None and nbytes > cap:
        raise ValueError(f"{what}: {nbytes} bytes do not fit the {cap}-byte device buffer")
    return ptr


def memcpy_htod_async(dest, src, stream=None):
    """Copies all of the numpy array src (its nbytes) to device memory dest, queued on stream. Returns once
    src may be reused. A pageable array of 1 MiB or more is staged into page-locked memory by Kiln's staging
    threads, chunk by chunk, each chunk's copy queued as soon as it is staged (the driver would stage it on
    one thread); KILN_PAGEABLE_COPY=driver turns that off."""
    src = _host(src, "memcpy_htod source")
    ptr = _device(dest, src.nbytes, "memcpy_htod")
    check(lib.kiln_gpu_memcpy_htod_async(ptr, src.ctypes.data, src.nbytes, stream_handle(stream)))


def memcpy_dtoh_async(dest, src, stream=None):
    """Fills all of the numpy array dest (its nbytes) from device memory src, queued on stream. A pageable
    dest holds the data when this returns (as with CUDA's pageable copies; from 64 KiB through Kiln's
    page-locked staging); a page-locked one (pagelocked_empty) only once the stream is synchronized, and it
    must stay alive until then."""
    dest = _host(dest, "memcpy_dtoh destination", writable=True)
    ptr = _device(src, dest.nbytes, "memcpy_dtoh")
    check(lib.kiln_gpu_memcpy_dtoh_async(dest.ctypes.data, ptr, dest.nbytes, stream_handle(stream)))


def memcpy_dtod_async(dest, src, size, stream=None):
    """Copies size bytes between device buffers, queued on stream."""
    size = int(size)
    d, s = _device(dest, size, "memcpy_dtod destination"), _device(src, size, "memcpy_dtod source")
    check(lib.kiln_gpu_memcpy_dtod_async(d, s, size, stream_handle(stream)))


def memcpy_htod(dest, src):
    """Synchronous memcpy_htod_async on the legacy default stream."""
    memcpy_htod_async(dest, src)
    check(lib.kiln_gpu_stream_synchronize(None))


def memcpy_dtoh(dest, src):
    """Synchronous memcpy_dtoh_async on the legacy default stream."""
    memcpy_dtoh_async(dest, src)
    check(lib.kiln_gpu_stream_synchronize(None))
