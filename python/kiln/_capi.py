"""ctypes binding of libkiln's C ABI (include/kiln/kiln_c.h). No compiler needed."""
import ctypes
import glob
import os

from . import errors

C_API_VERSION = 7  # the kiln_c.h version this package was written against

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    env = os.environ.get("KILN_LIBRARY")
    if env:
        yield env
        return
    yield from sorted(glob.glob(os.path.join(_PKG_DIR, "_lib", "libkiln.so*")))
    root = os.path.dirname(os.path.dirname(_PKG_DIR))  # python/kiln -> repo root
    # Newest build first; libraries older than the C ABI are skipped by _load().
    yield from sorted(glob.glob(os.path.join(root, "build*", "src", "libkiln.so")), key=os.path.getmtime,
                      reverse=True)
    yield "libkiln.so"


def _load():
    tried = []
    for path in _candidates():
        try:
            candidate = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        if hasattr(candidate, "kiln_c_api_version"):
            return candidate
        tried.append(f"{path}: no C API (kiln_c_api_version missing; an older libkiln)")
    raise ImportError("kiln: cannot load libkiln (set KILN_LIBRARY to its path); tried:\n  " + "\n  ".join(tried))


lib = _load()

_i64p = ctypes.POINTER(ctypes.c_int64)
_sigs = {
    "kiln_c_api_version": (ctypes.c_int, []),
    "kiln_check_version": (ctypes.c_int32, [ctypes.c_int]),
    "kiln_version": (ctypes.c_char_p, []),
    "kiln_last_error": (ctypes.c_char_p, []),
    "kiln_free": (None, [ctypes.c_void_p]),
    "kiln_runtime_create": (ctypes.c_int32, [ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_runtime_destroy": (None, [ctypes.c_void_p]),
    "kiln_engine_load": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_engine_deserialize": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                                 ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_engine_destroy": (None, [ctypes.c_void_p]),
    "kiln_engine_num_io_tensors": (ctypes.c_int, [ctypes.c_void_p]),
    "kiln_engine_tensor_name": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int]),
    "kiln_engine_tensor_mode": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
    "kiln_engine_tensor_dtype": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]),
    "kiln_engine_tensor_shape": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, _i64p, ctypes.c_int,
                                                  ctypes.POINTER(ctypes.c_int)]),
    "kiln_engine_profile_shape": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, _i64p, _i64p, _i64p,
                                                   ctypes.c_int, ctypes.POINTER(ctypes.c_int)]),
    "kiln_engine_num_metadata": (ctypes.c_int, [ctypes.c_void_p]),
    "kiln_engine_metadata_key": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_int]),
    "kiln_engine_metadata": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_char_p]),
    "kiln_engine_device": (ctypes.c_char_p, [ctypes.c_void_p]),
    "kiln_build_engine_from_file": (ctypes.c_int32, [
        ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_int), _i64p, _i64p, _i64p, ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_size_t)]),
    "kiln_context_create": (ctypes.c_int32, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_context_destroy": (None, [ctypes.c_void_p]),
    "kiln_context_set_input_shape": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, _i64p, ctypes.c_int]),
    "kiln_context_tensor_shape": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, _i64p, ctypes.c_int,
                                                   ctypes.POINTER(ctypes.c_int)]),
    "kiln_context_set_tensor_address": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]),
    "kiln_context_execute": (ctypes.c_int32, [ctypes.c_void_p]),
    "kiln_context_enqueue": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_void_p]),
    "kiln_context_set_num_threads": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_int]),
    # Version 2.
    "kiln_engine_target": (ctypes.c_char_p, [ctypes.c_void_p]),
    "kiln_build_options_init": (None, [ctypes.c_void_p]),
    "kiln_build_engine": (ctypes.c_int32, [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                           ctypes.POINTER(ctypes.c_size_t)]),
    "kiln_context_set_cuda_graph": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_int]),
    "kiln_context_set_low_latency": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]),
    "kiln_context_host_io_f16_inputs": (ctypes.c_int32, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]),
    "kiln_gpu_available": (ctypes.c_int, []),
    "kiln_gpu_describe_device": (ctypes.c_char_p, []),
    "kiln_gpu_malloc": (ctypes.c_int32, [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_gpu_free": (ctypes.c_int32, [ctypes.c_void_p]),
    "kiln_gpu_memcpy_htod_async": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                    ctypes.c_void_p]),
    "kiln_gpu_memcpy_dtoh_async": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                    ctypes.c_void_p]),
    "kiln_gpu_memcpy_dtod_async": (ctypes.c_int32, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                    ctypes.c_void_p]),
    "kiln_gpu_stream_create": (ctypes.c_int32, [ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_gpu_stream_destroy": (ctypes.c_int32, [ctypes.c_void_p]),
    "kiln_gpu_stream_synchronize": (ctypes.c_int32, [ctypes.c_void_p]),
    "kiln_gpu_device_synchronize": (ctypes.c_int32, []),
    # Version 4.
    "kiln_gpu_host_alloc": (ctypes.c_int32, [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]),
    "kiln_gpu_host_free": (ctypes.c_int32, [ctypes.c_void_p]),
}


class BuildOptions(ctypes.Structure):
    """kiln_build_options_t (kiln_c.h, version 6); fill it with kiln_build_options_init."""
    _fields_ = [("struct_size", ctypes.c_size_t), ("device", ctypes.c_char_p), ("fp16", ctypes.c_int),
                ("tf32", ctypes.c_int), ("timing_cache_file", ctypes.c_char_p), ("num_profiles", ctypes.c_int),
                ("profile_names", ctypes.POINTER(ctypes.c_char_p)), ("profile_ranks", ctypes.POINTER(ctypes.c_int)),
                ("profile_min", _i64p), ("profile_opt", _i64p), ("profile_max", _i64p),
                ("int8", ctypes.c_int), ("calib_data", ctypes.c_char_p), ("calib_cache", ctypes.c_char_p),
                ("calib_algo", ctypes.c_char_p), ("best", ctypes.c_int), ("bf16", ctypes.c_int)]


def _declare(names):
    for name in names:
        res, args = _sigs[name]
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def check(code):
    """Raises the KilnError subclass for a non-zero kiln_status_t, carrying kiln_last_error()."""
    if code != 0:
        msg = (lib.kiln_last_error() or b"").decode("utf-8", "replace")
        raise errors.from_code(code, msg)


def check_version(header_version=C_API_VERSION):
    check(lib.kiln_check_version(header_version))


# Version first, so that an older libkiln fails with a clear message rather than a missing symbol.
_declare(["kiln_c_api_version", "kiln_check_version", "kiln_last_error"])
check_version()
_declare(_sigs)

MAX_RANK = 16


def read_dims(fn, *args):
    dims = (ctypes.c_int64 * MAX_RANK)()
    rank = ctypes.c_int()
    check(fn(*args, dims, MAX_RANK, ctypes.byref(rank)))
    return tuple(dims[i] for i in range(rank.value))


def enc(s):
    return s.encode("utf-8")
