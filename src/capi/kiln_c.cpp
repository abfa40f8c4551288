// The C ABI (include/kiln/kiln_c.h) over the C++ API. Each entry point converts a Status into a code
// plus a thread-local message, and catches every exception so none crosses the ABI.
#include "kiln/kiln_c.h"

#include <cstdlib>
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <exception>
#include <iterator>
#include <memory>
#include <string>

#include "kiln/builder.h"
#include "kiln/gpu.h"
#include "kiln/runtime.h"

struct kiln_runtime {
  kiln::Runtime runtime;
};
struct kiln_engine {
  std::shared_ptr<kiln::Engine> engine;
  std::string device, target;  // returned as C strings, so they live with the handle
};
struct kiln_context {
  std::shared_ptr<kiln::Engine> engine;  // keeps the engine alive while the context lives
  std::unique_ptr<kiln::ExecutionContext> ctx;
  bool on_gpu = false;
};

namespace {

thread_local std::string g_last_error;

kiln_status_t fail(const kiln::Status& status) {
  g_last_error = status.to_string();
  return static_cast<kiln_status_t>(status.code());
}

kiln_status_t fail(kiln_status_t code, std::string message) {
  g_last_error = std::move(message);
  return code;
}

// Records the in-flight exception as KILN_INTERNAL; itself never throws (if even the message cannot
// be allocated, the message is left empty).
kiln_status_t fail_current_exception(const char* where) noexcept {
  try {
    try {
      throw;
    } catch (const std::exception& e) {
      g_last_error = std::string(where) + ": " + e.what();
    } catch (...) {
      g_last_error = std::string(where) + ": unknown exception";
    }
  } catch (...) {
    g_last_error.clear();
  }
  return KILN_INTERNAL;
}

// Runs body() so that no exception leaves an entry point.
template <class F>
kiln_status_t guarded(const char* where, F&& body) noexcept {
  try {
    return body();
  } catch (...) {
    return fail_current_exception(where);
  }
}

// Inside guarded()'s lambda; `fn` is the entry point's name.
#define KILN_REQUIRE(cond, what)                                                  \
  do {                                                                             \
    if (!(cond)) return fail(KILN_INVALID_ARGUMENT, std::string(fn) + ": " what); \
  } while (0)

kiln_status_t write_dims(const kiln::Dims& d, int64_t* dims, int capacity, int* rank) {
  *rank = static_cast<int>(d.size());
  if (static_cast<int>(d.size()) > capacity) {
    return fail(KILN_OUT_OF_RANGE, "rank " + std::to_string(d.size()) + " exceeds dims capacity " +
                                       std::to_string(capacity));
  }
  for (size_t i = 0; i < d.size(); ++i) dims[i] = d[i];
  return KILN_OK;
}

// Whether a GPU can be used, checked once: it does not change while the process runs, and the copy
// entry points sit on hot paths (a course script copies 1,000 times in a timed loop).
const kiln::Status& gpu_status() {
  static const kiln::Status status = [] {
    auto d = kiln::gpu::describe_device();
    if (d.is_ok()) return kiln::Status::ok();
    // One wording whatever the cause (no CUDA backend, no driver, no device), for callers to match.
    std::string why = d.status().to_string();
    if (why.rfind("no usable", 0) != 0) why = "no usable GPU: " + why;
    return kiln::Status(kiln::StatusCode::kUnsupported, why);
  }();
  return status;
}

// Inside guarded()'s lambda of a kiln_gpu_* entry point: fails with KILN_UNSUPPORTED (and why) when no
// GPU can be used, before touching the CUDA runtime.
#define KILN_REQUIRE_GPU()                                                                          \
  do {                                                                                              \
    if (!gpu_status().is_ok())                                                                      \
      return fail(KILN_UNSUPPORTED, std::string(fn) + ": " + gpu_status().to_string());              \
  } while (0)

kiln_status_t check(const kiln::Status& s) { return s.is_ok() ? KILN_OK : fail(s); }

}  // namespace

extern "C" {

int kiln_c_api_version(void) { return KILN_C_API_VERSION; }

kiln_status_t kiln_check_version(int header_version) {
  if (header_version > KILN_C_API_VERSION) {
    return fail(KILN_VERSION_MISMATCH, "kiln C API: header version " + std::to_string(header_version) +
                                           " is newer than the library's " + std::to_string(KILN_C_API_VERSION) +
                                           " (libkiln " + kiln::version() + "); upgrade libkiln");
  }
  if (header_version < KILN_C_API_MIN_COMPATIBLE) {
    return fail(KILN_VERSION_MISMATCH, "kiln C API: header version " + std::to_string(header_version) +
                                           " is older than the oldest this library supports (" +
                                           std::to_string(KILN_C_API_MIN_COMPATIBLE) + "); rebuild against "
                                           "the current kiln_c.h");
  }
  return KILN_OK;
}

const char* kiln_version(void) { return kiln::version(); }
const char* kiln_last_error(void) { return g_last_error.c_str(); }
const char* kiln_status_name(kiln_status_t code) {
  if (code < KILN_OK || code > KILN_INTERNAL) return "unknown";
  return kiln::status_code_name(static_cast<kiln::StatusCode>(code));
}
void kiln_free(void* p) { std::free(p); }

kiln_status_t kiln_runtime_create(kiln_runtime_t** out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(out, "out is NULL");
    *out = new kiln_runtime{};
    return KILN_OK;
  });
}
void kiln_runtime_destroy(kiln_runtime_t* runtime) { delete runtime; }

static kiln_status_t wrap_engine(kiln::Result<std::shared_ptr<kiln::Engine>>&& r, kiln_engine_t** out) {
  if (!r.is_ok()) return fail(r.status());
  auto* e = new kiln_engine{std::move(r).value(), {}, {}};
  e->device = e->engine->device();
  e->target = e->engine->target();
  *out = e;
  return KILN_OK;
}

kiln_status_t kiln_engine_load(kiln_runtime_t* runtime, const char* path, kiln_engine_t** out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(runtime && path && out, "NULL argument");
    *out = nullptr;
    return wrap_engine(runtime->runtime.load_engine(path), out);
  });
}

kiln_status_t kiln_engine_deserialize(kiln_runtime_t* runtime, const void* data, size_t size, kiln_engine_t** out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(runtime && (data || size == 0) && out, "NULL argument");
    *out = nullptr;
    std::span<const uint8_t> bytes(static_cast<const uint8_t*>(data), size);
    return wrap_engine(runtime->runtime.deserialize_engine(bytes), out);
  });
}
void kiln_engine_destroy(kiln_engine_t* engine) { delete engine; }

int kiln_engine_num_io_tensors(const kiln_engine_t* engine) { return engine ? engine->engine->num_io_tensors() : 0; }

const char* kiln_engine_tensor_name(const kiln_engine_t* engine, int index) {
  if (!engine || index < 0 || index >= engine->engine->num_io_tensors()) return nullptr;
  return engine->engine->io_tensor_name(index).c_str();
}

int kiln_engine_tensor_mode(const kiln_engine_t* engine, const char* name) {
  try {
    if (!engine || !name) return KILN_TENSOR_NONE;
    return static_cast<int>(engine->engine->tensor_mode(name));
  } catch (...) {
    return KILN_TENSOR_NONE;
  }
}

int kiln_engine_tensor_dtype(const kiln_engine_t* engine, const char* name) {
  try {
    if (!engine || !name) return 0;
    return static_cast<int>(engine->engine->tensor_dtype(name));
  } catch (...) {
    return 0;
  }
}

kiln_status_t kiln_engine_tensor_shape(const kiln_engine_t* engine, const char* name, int64_t* dims, int capacity,
                                       int* rank) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(engine && name && rank && (dims || capacity == 0), "NULL argument");
    if (engine->engine->tensor_mode(name) == kiln::TensorIOMode::kNone) {
      return fail(KILN_NOT_FOUND, std::string("'") + name + "' is not an IO tensor of this engine");
    }
    return write_dims(engine->engine->tensor_shape(name), dims, capacity, rank);
  });
}

kiln_status_t kiln_engine_profile_shape(const kiln_engine_t* engine, const char* input, int64_t* min, int64_t* opt,
                                        int64_t* max, int capacity, int* rank) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(engine && input && rank, "NULL argument");
    auto p = engine->engine->profile_shapes(input);
    if (!p.is_ok()) return fail(p.status());
    *rank = static_cast<int>(p->min.size());
    if (*rank > capacity) return write_dims(p->min, min, capacity, rank);
    KILN_REQUIRE(min && opt && max, "NULL dims buffer");
    (void)write_dims(p->min, min, capacity, rank);
    (void)write_dims(p->opt, opt, capacity, rank);
    return write_dims(p->max, max, capacity, rank);
  });
}

int kiln_engine_num_metadata(const kiln_engine_t* engine) {
  return engine ? static_cast<int>(engine->engine->metadata().size()) : 0;
}

const char* kiln_engine_metadata_key(const kiln_engine_t* engine, int index) {
  if (!engine || index < 0) return nullptr;
  const auto& md = engine->engine->metadata();
  if (index >= static_cast<int>(md.size())) return nullptr;
  auto it = md.begin();
  std::advance(it, index);
  return it->first.c_str();
}

const char* kiln_engine_metadata(const kiln_engine_t* engine, const char* key) {
  if (!engine || !key) return nullptr;
  const auto& md = engine->engine->metadata();
  auto it = md.find(key);
  return it == md.end() ? nullptr : it->second.c_str();
}

const char* kiln_engine_device(const kiln_engine_t* engine) { return engine ? engine->device.c_str() : nullptr; }
const char* kiln_engine_target(const kiln_engine_t* engine) { return engine ? engine->target.c_str() : nullptr; }

void kiln_build_options_init(kiln_build_options_t* options) {
  if (!options) return;
  *options = kiln_build_options_t{};
  options->struct_size = sizeof(kiln_build_options_t);
  options->tf32 = 1;  // as kiln::BuilderConfig and TensorRT 10
}

kiln_status_t kiln_build_engine(const char* onnx_path, const kiln_build_options_t* options, void** out_data,
                                size_t* out_size) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(onnx_path && out_data && out_size, "NULL argument");
    *out_data = nullptr;
    *out_size = 0;
    kiln_build_options_t o;
    kiln_build_options_init(&o);
    if (options) {
      // Version 2 is the first layout (up to profile_max); later versions append fields, which keep their
      // defaults for callers built against an older header. No struct_size: kiln_build_options_init skipped.
      KILN_REQUIRE(options->struct_size >= offsetof(kiln_build_options_t, int8),
                   "options->struct_size is too small (call kiln_build_options_init first)");
      std::memcpy(&o, options, std::min(options->struct_size, sizeof(o)));
      o.struct_size = sizeof(o);
    }
    KILN_REQUIRE(o.num_profiles >= 0, "num_profiles < 0");
    KILN_REQUIRE(o.num_profiles == 0 ||
                     (o.profile_names && o.profile_ranks && o.profile_min && o.profile_opt && o.profile_max),
                 "profile arrays are NULL");
    kiln::BuilderConfig config;
    if (o.device) config.device = o.device;
    config.fp16 = o.fp16 != 0;
    config.bf16 = o.bf16 != 0;
    config.tf32 = o.tf32 != 0;
    if (o.timing_cache_file) config.timing_cache_file = o.timing_cache_file;
    config.best = o.best != 0;
    config.int8.enabled = o.int8 != 0 || (config.best && (o.calib_data || o.calib_cache));
    if (o.calib_data) config.int8.calib_data = o.calib_data;
    if (o.calib_cache) config.int8.cache_file = o.calib_cache;
    if (o.calib_algo) config.int8.algorithm = o.calib_algo;
    if (config.best && config.device == "cuda") config.fp16 = true;
    size_t offset = 0;
    for (int i = 0; i < o.num_profiles; ++i) {
      KILN_REQUIRE(o.profile_names[i] && o.profile_ranks[i] >= 0, "bad profile entry");
      const size_t r = static_cast<size_t>(o.profile_ranks[i]);
      kiln::ShapeProfile p;
      p.min.assign(o.profile_min + offset, o.profile_min + offset + r);
      p.opt.assign(o.profile_opt + offset, o.profile_opt + offset + r);
      p.max.assign(o.profile_max + offset, o.profile_max + offset + r);
      config.profiles[o.profile_names[i]] = std::move(p);
      offset += r;
    }
    auto built = kiln::build_engine_from_file(onnx_path, config);
    if (!built.is_ok()) return fail(built.status());
    const auto& bytes = built->engine;
    void* buf = std::malloc(bytes.empty() ? 1 : bytes.size());
    if (!buf) return fail(KILN_INTERNAL, std::string(fn) + ": out of memory");
    if (!bytes.empty()) std::memcpy(buf, bytes.data(), bytes.size());
    *out_data = buf;
    *out_size = bytes.size();
    return KILN_OK;
  });
}

kiln_status_t kiln_build_engine_from_file(const char* onnx_path, const char* device, int num_profiles,
                                          const char* const* profile_names, const int* profile_ranks,
                                          const int64_t* profile_min, const int64_t* profile_opt,
                                          const int64_t* profile_max, void** out_data, size_t* out_size) {
  kiln_build_options_t o;
  kiln_build_options_init(&o);
  o.device = device;
  o.num_profiles = num_profiles;
  o.profile_names = profile_names;
  o.profile_ranks = profile_ranks;
  o.profile_min = profile_min;
  o.profile_opt = profile_opt;
  o.profile_max = profile_max;
  return kiln_build_engine(onnx_path, &o, out_data, out_size);
}

kiln_status_t kiln_context_create(const kiln_engine_t* engine, kiln_context_t** out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(engine && out, "NULL argument");
    *out = nullptr;
    auto c = engine->engine->create_execution_context();
    if (!c.is_ok()) return fail(c.status());
    *out = new kiln_context{engine->engine, std::move(c).value(), engine->device == "cuda"};
    return KILN_OK;
  });
}
void kiln_context_destroy(kiln_context_t* ctx) { delete ctx; }

kiln_status_t kiln_context_set_input_shape(kiln_context_t* ctx, const char* name, const int64_t* dims, int rank) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx && name && rank >= 0 && (dims || rank == 0), "NULL argument");
    kiln::Dims d(dims, dims + rank);
    if (auto s = ctx->ctx->set_input_shape(name, d); !s.is_ok()) return fail(s);
    return KILN_OK;
  });
}

kiln_status_t kiln_context_tensor_shape(const kiln_context_t* ctx, const char* name, int64_t* dims, int capacity,
                                        int* rank) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx && name && rank && (dims || capacity == 0), "NULL argument");
    auto d = ctx->ctx->tensor_shape(name);
    if (!d.is_ok()) return fail(d.status());
    return write_dims(*d, dims, capacity, rank);
  });
}

kiln_status_t kiln_context_set_tensor_address(kiln_context_t* ctx, const char* name, void* address) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx && name, "NULL argument");
    if (auto s = ctx->ctx->set_tensor_address(name, address); !s.is_ok()) return fail(s);
    return KILN_OK;
  });
}

kiln_status_t kiln_context_execute(kiln_context_t* ctx) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx, "NULL context");
    if (auto s = ctx->ctx->execute(); !s.is_ok()) return fail(s);
    return KILN_OK;
  });
}

kiln_status_t kiln_context_enqueue(kiln_context_t* ctx, void* stream) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx, "NULL context");
    if (ctx->on_gpu) return check(ctx->ctx->enqueue(stream));
    // A stream handed to a CPU engine means the caller expects asynchronous GPU work: say so.
    KILN_REQUIRE(stream == nullptr, "CPU engines run synchronously; stream must be NULL (0)");
    return check(ctx->ctx->execute());
  });
}

kiln_status_t kiln_context_set_low_latency(kiln_context_t* ctx, int on, int max_rows) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx, "NULL context");
    return check(ctx->ctx->set_low_latency(on != 0, max_rows));
  });
}

kiln_status_t kiln_context_host_io_f16_inputs(const kiln_context_t* ctx, int* out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx, "NULL context");
    KILN_REQUIRE(out, "NULL out");
    *out = ctx->ctx->last_host_io_f16_inputs();
    return KILN_OK;
  });
}

kiln_status_t kiln_context_set_cuda_graph(kiln_context_t* ctx, int on) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx, "NULL context");
    ctx->ctx->set_cuda_graph(on != 0);
    return KILN_OK;
  });
}

kiln_status_t kiln_context_set_num_threads(kiln_context_t* ctx, int threads) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(ctx && threads >= 0, "bad argument");
    ctx->ctx->set_num_threads(threads);
    return KILN_OK;
  });
}

int kiln_gpu_available(void) {
  try {
    return gpu_status().is_ok() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

const char* kiln_gpu_describe_device(void) {
  try {
    static const std::string text = [] {
      auto d = kiln::gpu::describe_device();
      return d.is_ok() ? *d : gpu_status().to_string();
    }();
    return text.c_str();
  } catch (...) {
    return "unknown (describing the device failed)";
  }
}

kiln_status_t kiln_gpu_malloc(size_t size, void** out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(out, "out is NULL");
    *out = nullptr;
    KILN_REQUIRE_GPU();
    auto p = kiln::gpu::device_alloc(size);
    if (!p.is_ok()) return fail(p.status());
    *out = *p;
    return KILN_OK;
  });
}

kiln_status_t kiln_gpu_free(void* p) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    if (!p) return KILN_OK;
    KILN_REQUIRE_GPU();
    return check(kiln::gpu::device_free(p));
  });
}

kiln_status_t kiln_gpu_host_alloc(size_t size, void** out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(out, "out is NULL");
    *out = nullptr;
    KILN_REQUIRE_GPU();
    auto p = kiln::gpu::host_alloc_pinned(size);
    if (!p.is_ok()) return fail(p.status());
    *out = *p;
    return KILN_OK;
  });
}

kiln_status_t kiln_gpu_host_free(void* p) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    if (!p) return KILN_OK;
    KILN_REQUIRE_GPU();
    return check(kiln::gpu::host_free_pinned(p));
  });
}

kiln_status_t kiln_gpu_memcpy_htod_async(void* dst, const void* src, size_t size, void* stream) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE_GPU();
    KILN_REQUIRE(size == 0 || (dst && src), "NULL pointer");
    return check(kiln::gpu::upload_async(dst, src, size, stream));
  });
}

kiln_status_t kiln_gpu_memcpy_dtoh_async(void* dst, const void* src, size_t size, void* stream) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE_GPU();
    KILN_REQUIRE(size == 0 || (dst && src), "NULL pointer");
    return check(kiln::gpu::download_async(dst, src, size, stream));
  });
}

kiln_status_t kiln_gpu_memcpy_dtod_async(void* dst, const void* src, size_t size, void* stream) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE_GPU();
    KILN_REQUIRE(size == 0 || (dst && src), "NULL pointer");
    return check(kiln::gpu::copy_device_to_device_async(dst, src, size, stream));
  });
}

kiln_status_t kiln_gpu_stream_create(void** out) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE(out, "out is NULL");
    *out = nullptr;
    KILN_REQUIRE_GPU();
    auto s = kiln::gpu::stream_create();
    if (!s.is_ok()) return fail(s.status());
    *out = *s;
    return KILN_OK;
  });
}

kiln_status_t kiln_gpu_stream_destroy(void* stream) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE_GPU();
    KILN_REQUIRE(stream, "the default stream cannot be destroyed");
    return check(kiln::gpu::stream_destroy(stream));
  });
}

kiln_status_t kiln_gpu_stream_synchronize(void* stream) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE_GPU();
    return check(kiln::gpu::stream_synchronize(stream));
  });
}

kiln_status_t kiln_gpu_device_synchronize(void) {
  const char* fn = __func__;
  return guarded(fn, [&]() -> kiln_status_t {
    KILN_REQUIRE_GPU();
    return check(kiln::gpu::device_synchronize());
  });
}

}  // extern "C"
