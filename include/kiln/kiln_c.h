/* Kiln's stable C ABI: opaque handles over the C++ runtime and builder, for bindings (the Python
 * package `kiln` loads it with ctypes) and C callers.
 *
 * Rules:
 *  - Every fallible function returns kiln_status_t (0 = KILN_OK; the codes mirror kiln::StatusCode).
 *    On failure kiln_last_error() returns the message with Kiln's full context chain; it is
 *    thread-local and stays valid until the next failing call on the same thread.
 *  - No C++ exception crosses this ABI: each entry point catches everything (KILN_INTERNAL).
 *  - Versioning: KILN_C_API_VERSION is bumped when a function is added or changed. A caller passes the
 *    version of the header it was compiled against to kiln_check_version(); the library accepts
 *    any header version from KILN_C_API_MIN_COMPATIBLE up to its own. A header newer than the library
 *    (the caller expects functions the library lacks) fails with KILN_VERSION_MISMATCH, and so does a
 *    header older than KILN_C_API_MIN_COMPATIBLE (a library that dropped or changed what that header
 *    declared refuses it).
 *  - Strings returned by the library are owned by the handle they came from and live as long as it.
 *  - CPU engines: tensor addresses are host pointers; kiln_context_enqueue() requires stream == NULL
 *    and runs synchronously on the calling thread, like kiln_context_execute().
 *  - CUDA engines: tensor addresses are device pointers (16-byte aligned; cudaMalloc/kiln_gpu_malloc
 *    memory is) and kiln_context_enqueue() queues the work on the given cudaStream_t (NULL = the legacy
 *    default stream) and returns; the caller synchronizes. Streams and pointers are the CUDA runtime's
 *    own, so they mix with other CUDA libraries (PyTorch, CuPy) in the process.
 *
 * History: version 1 (CPU engines); version 2 added CUDA streams in kiln_context_enqueue,
 * kiln_context_set_cuda_graph, kiln_engine_target, kiln_build_engine with kiln_build_options_t, and
 * the kiln_gpu_* plumbing; version 3 appended the INT8 fields to kiln_build_options_t (a version-2
 * struct, shorter by its struct_size, still builds with them at their defaults); version 4 added
 * kiln_gpu_host_alloc/kiln_gpu_host_free (pinned host memory); version 5 added
 * kiln_context_set_low_latency (and host addresses for execute() on CUDA engines); version 6 appended bf16 to
 * kiln_build_options_t (CPU BF16 layers); version 7 added kiln_context_host_io_f16_inputs. Nothing was removed or
 * changed, so version-1 callers still work (KILN_C_API_MIN_COMPATIBLE stays 1).
 */
#ifndef KILN_KILN_C_H_
#define KILN_KILN_C_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define KILN_C_EXPORT __declspec(dllexport)
#else
#define KILN_C_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_C_API_VERSION 7
#define KILN_C_API_MIN_COMPATIBLE 1

typedef enum {
  KILN_OK = 0,
  KILN_INVALID_ARGUMENT = 1,
  KILN_NOT_FOUND = 2,
  KILN_UNSUPPORTED = 3,
  KILN_PARSE_ERROR = 4,
  KILN_CORRUPT_ENGINE = 5,
  KILN_VERSION_MISMATCH = 6,
  KILN_OUT_OF_RANGE = 7,
  KILN_IO_ERROR = 8,
  KILN_RUNTIME_ERROR = 9,
  KILN_INTERNAL = 10
} kiln_status_code;
typedef int32_t kiln_status_t;

/* Tensor IO modes (values of kiln::TensorIOMode). */
#define KILN_TENSOR_NONE 0
#define KILN_TENSOR_INPUT 1
#define KILN_TENSOR_OUTPUT 2

/* Dtypes are ONNX TensorProto.DataType codes: 1 float32, 2 uint8, 3 int8, 6 int32, 7 int64, 9 bool,
 * 10 float16, 11 float64. */

typedef struct kiln_runtime kiln_runtime_t;
typedef struct kiln_engine kiln_engine_t;
typedef struct kiln_context kiln_context_t;

/* Versions and errors. */
KILN_C_EXPORT int kiln_c_api_version(void);
KILN_C_EXPORT kiln_status_t kiln_check_version(int header_version);
KILN_C_EXPORT const char* kiln_version(void); /* library version, e.g. "0.1.0" */
KILN_C_EXPORT const char* kiln_last_error(void);
KILN_C_EXPORT const char* kiln_status_name(kiln_status_t code);
KILN_C_EXPORT void kiln_free(void* p);

/* Runtime and engines. */
KILN_C_EXPORT kiln_status_t kiln_runtime_create(kiln_runtime_t** out);
KILN_C_EXPORT void kiln_runtime_destroy(kiln_runtime_t* runtime);
KILN_C_EXPORT kiln_status_t kiln_engine_load(kiln_runtime_t* runtime, const char* path, kiln_engine_t** out);
KILN_C_EXPORT kiln_status_t kiln_engine_deserialize(kiln_runtime_t* runtime, const void* data, size_t size,
                                                    kiln_engine_t** out);
KILN_C_EXPORT void kiln_engine_destroy(kiln_engine_t* engine);

KILN_C_EXPORT int kiln_engine_num_io_tensors(const kiln_engine_t* engine);
/* NULL when index is out of range. */
KILN_C_EXPORT const char* kiln_engine_tensor_name(const kiln_engine_t* engine, int index);
/* KILN_TENSOR_NONE when name is not an IO tensor. */
KILN_C_EXPORT int kiln_engine_tensor_mode(const kiln_engine_t* engine, const char* name);
/* ONNX dtype code; 0 when name is not an IO tensor. */
KILN_C_EXPORT int kiln_engine_tensor_dtype(const kiln_engine_t* engine, const char* name);
/* Static shape (-1 for dynamic dims): writes up to capacity dims, sets *rank to the true rank.
 * Fails with KILN_OUT_OF_RANGE (and *rank set) when capacity is too small. */
KILN_C_EXPORT kiln_status_t kiln_engine_tensor_shape(const kiln_engine_t* engine, const char* name,
                                                     int64_t* dims, int capacity, int* rank);
/* Profile of an input: each of min/opt/max receives *rank dims (capacity each). */
KILN_C_EXPORT kiln_status_t kiln_engine_profile_shape(const kiln_engine_t* engine, const char* input,
                                                      int64_t* min, int64_t* opt, int64_t* max, int capacity,
                                                      int* rank);
KILN_C_EXPORT int kiln_engine_num_metadata(const kiln_engine_t* engine);
KILN_C_EXPORT const char* kiln_engine_metadata_key(const kiln_engine_t* engine, int index);
/* NULL when the key is absent. */
KILN_C_EXPORT const char* kiln_engine_metadata(const kiln_engine_t* engine, const char* key);
KILN_C_EXPORT const char* kiln_engine_device(const kiln_engine_t* engine);
/* What the engine was built for: the CPU ISA, or the GPU ("NVIDIA H100 80GB HBM3 (sm_90, ...)"). */
KILN_C_EXPORT const char* kiln_engine_target(const kiln_engine_t* engine);

/* Builder: ONNX file -> serialized engine in a malloc'd buffer (*out_data) the caller frees with
 * kiln_free. Profiles: num_profiles inputs; profile i names profile_names[i] and has rank
 * profile_ranks[i]; its dims are packed in profile_min/opt/max at the running offset (sum of the
 * previous ranks). device may be NULL ("cpu"). */
KILN_C_EXPORT kiln_status_t kiln_build_engine_from_file(const char* onnx_path, const char* device,
                                                        int num_profiles, const char* const* profile_names,
                                                        const int* profile_ranks, const int64_t* profile_min,
                                                        const int64_t* profile_opt, const int64_t* profile_max,
                                                        void** out_data, size_t* out_size);

/* Builder with options (version 2). Call kiln_build_options_init() first, then set fields: the
 * struct_size it records lets later versions append fields without breaking this one. Profiles are
 * packed as for kiln_build_engine_from_file. */
typedef struct {
  size_t struct_size;            /* sizeof(kiln_build_options_t), set by kiln_build_options_init */
  const char* device;            /* "cpu" or "cuda"; NULL = "cpu" */
  int fp16;                      /* nonzero: layers may run in FP16 (CUDA only); engine IO stays FP32 */
  int tf32;                      /* nonzero (default): FP32 layers may use TF32 tensor cores (CUDA) */
  const char* timing_cache_file; /* CUDA tactic timings read from and added to this file; NULL = none */
  int num_profiles;
  const char* const* profile_names;
  const int* profile_ranks;
  const int64_t* profile_min;
  const int64_t* profile_opt;
  const int64_t* profile_max;
  /* Version 3: INT8 post-training quantization (see docs/int8.md). */
  int int8;                      /* nonzero: GEMM layers run in INT8 with calibrated scales */
  const char* calib_data;        /* calibration files (IDX/.npy/raw, comma-separated); NULL = none */
  const char* calib_cache;       /* TensorRT-format cache: read when it exists, else written; NULL = none */
  const char* calib_algo;        /* "percentile" (NULL), "entropy" or "minmax" */
  int best;                      /* nonzero: per layer INT8 or float, whichever is faster (trtexec --best) */
  /* Version 6. */
  int bf16;                      /* nonzero: dense layer chains run in BF16 (CPU only); engine IO stays FP32 */
} kiln_build_options_t;
KILN_C_EXPORT void kiln_build_options_init(kiln_build_options_t* options);
/* options may be NULL (defaults). Output as for kiln_build_engine_from_file. */
KILN_C_EXPORT kiln_status_t kiln_build_engine(const char* onnx_path, const kiln_build_options_t* options,
                                              void** out_data, size_t* out_size);

/* Execution contexts. */
KILN_C_EXPORT kiln_status_t kiln_context_create(const kiln_engine_t* engine, kiln_context_t** out);
KILN_C_EXPORT void kiln_context_destroy(kiln_context_t* ctx);
KILN_C_EXPORT kiln_status_t kiln_context_set_input_shape(kiln_context_t* ctx, const char* name,
                                                         const int64_t* dims, int rank);
KILN_C_EXPORT kiln_status_t kiln_context_tensor_shape(const kiln_context_t* ctx, const char* name,
                                                      int64_t* dims, int capacity, int* rank);
KILN_C_EXPORT kiln_status_t kiln_context_set_tensor_address(kiln_context_t* ctx, const char* name, void* address);
KILN_C_EXPORT kiln_status_t kiln_context_execute(kiln_context_t* ctx);
/* CUDA engines: queues the work on stream (a cudaStream_t; NULL = legacy default stream) and returns.
 * CPU engines: stream must be NULL (else KILN_INVALID_ARGUMENT); runs synchronously. */
KILN_C_EXPORT kiln_status_t kiln_context_enqueue(kiln_context_t* ctx, void* stream);
KILN_C_EXPORT kiln_status_t kiln_context_set_num_threads(kiln_context_t* ctx, int threads);
/* CUDA engines: capture the layers into a CUDA graph per input shape and replay it (the stream must
 * not be the legacy default stream). No effect on CPU engines. */
KILN_C_EXPORT kiln_status_t kiln_context_set_cuda_graph(kiln_context_t* ctx, int on);
/* CUDA engines: low-latency mode (ExecutionContext::set_low_latency): a resident kernel serves
 * kiln_context_execute() on host tensor addresses for batches of up to max_rows rows. on = 0 stops it. */
KILN_C_EXPORT kiln_status_t kiln_context_set_low_latency(kiln_context_t* ctx, int on, int max_rows);
/* CUDA engines (version 7): how many inputs the last kiln_context_execute() on host memory converted on the
 * host while staging, to float16 (FP16 engines) or int8 (INT8 engines' quantized input)
 * (ExecutionContext::last_host_io_f16_inputs; 0 = none, and always 0 on CPU engines). */
KILN_C_EXPORT kiln_status_t kiln_context_host_io_f16_inputs(const kiln_context_t* ctx, int* out);

/* GPU plumbing (version 2) over the CUDA runtime, for bindings that drive CUDA engines without CUDA
 * headers or another CUDA library. Pointers and streams are plain CUDA ones (void* = cudaStream_t;
 * NULL = legacy default stream). Without a usable GPU, or in a build without the CUDA backend, every
 * call fails with KILN_UNSUPPORTED and says why. Copies are asynchronous on the stream; with pageable
 * host memory CUDA completes them before returning. */
KILN_C_EXPORT int kiln_gpu_available(void); /* 1 when a usable GPU is present, else 0 */
/* The GPU ("NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, CUDA 13.0)"), or why none can be used. Static. */
KILN_C_EXPORT const char* kiln_gpu_describe_device(void);
KILN_C_EXPORT kiln_status_t kiln_gpu_malloc(size_t size, void** out); /* 256-byte aligned */
KILN_C_EXPORT kiln_status_t kiln_gpu_free(void* p);                   /* NULL is a no-op */
/* Version 4: page-locked (pinned) host memory, which copies reach at full PCIe speed and asynchronously. */
KILN_C_EXPORT kiln_status_t kiln_gpu_host_alloc(size_t size, void** out);
KILN_C_EXPORT kiln_status_t kiln_gpu_host_free(void* p); /* NULL is a no-op */
/* Host memory of any kind (kiln::gpu::upload_async / download_async): htod returns once src may be reused;
 * dtoh into pageable memory returns once the data is there, into page-locked memory once queued. Large
 * pageable copies go through Kiln's page-locked staging threads (KILN_PAGEABLE_COPY=driver: the driver's). */
KILN_C_EXPORT kiln_status_t kiln_gpu_memcpy_htod_async(void* dst, const void* src, size_t size, void* stream);
KILN_C_EXPORT kiln_status_t kiln_gpu_memcpy_dtoh_async(void* dst, const void* src, size_t size, void* stream);
KILN_C_EXPORT kiln_status_t kiln_gpu_memcpy_dtod_async(void* dst, const void* src, size_t size, void* stream);
KILN_C_EXPORT kiln_status_t kiln_gpu_stream_create(void** out); /* a non-blocking stream */
KILN_C_EXPORT kiln_status_t kiln_gpu_stream_destroy(void* stream);
KILN_C_EXPORT kiln_status_t kiln_gpu_stream_synchronize(void* stream);
KILN_C_EXPORT kiln_status_t kiln_gpu_device_synchronize(void);

#ifdef __cplusplus
}
#endif

#endif /* KILN_KILN_C_H_ */
