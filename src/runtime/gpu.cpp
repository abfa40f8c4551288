// kiln::gpu: thin, checked wrappers over the CUDA runtime for programs that include no CUDA headers.
#include "kiln/gpu.h"

#include <thread>

#include <fmt/format.h>

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_util.h"
#endif

namespace kiln::gpu {

#ifdef KILN_WITH_CUDA

namespace {
cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t as_event(Event e) { return static_cast<cudaEvent_t>(e); }
}  // namespace

bool available() { return cuda::current_device().is_ok(); }

Result<std::string> describe_device() {
  auto d = cuda::current_device();
  if (!d.is_ok()) return d.status();
  return d->describe();
}

Result<int> driver_version() {
  int v = 0;
  Status s = cuda::check(cudaDriverGetVersion(&v), "cudaDriverGetVersion");
  if (!s.is_ok()) return s;
  return v;
}

Result<size_t> device_memory_used() {
  size_t free_bytes = 0, total = 0;
  Status s = cuda::check(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  if (!s.is_ok()) return s;
  return total - free_bytes;
}

Result<void*> device_alloc(size_t bytes) {
  void* p = nullptr;
  Status s = cuda::check(cudaMalloc(&p, std::max<size_t>(bytes, 1)), fmt::format("cudaMalloc of {} bytes", bytes));
  if (!s.is_ok()) return s;
  return p;
}
Status device_free(void* p) { return cuda::check(cudaFree(p), "cudaFree"); }

Result<void*> host_alloc_pinned(size_t bytes) {
  void* p = nullptr;
  Status s = cuda::check(cudaMallocHost(&p, std::max<size_t>(bytes, 1)),
                         fmt::format("cudaMallocHost of {} bytes", bytes));
  if (!s.is_ok()) return s;
  return p;
}
Status host_free_pinned(void* p) { return cuda::check(cudaFreeHost(p), "cudaFreeHost"); }

Status memset_async(void* dst, int value, size_t bytes, Stream stream) {
  return cuda::check(cudaMemsetAsync(dst, value, bytes, as_stream(stream)), "cudaMemsetAsync");
}
Status copy_to_device_async(void* dst, const void* src, size_t bytes, Stream stream) {
  return cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)),
                     fmt::format("copying {} bytes host to device", bytes));
}
Status copy_to_host_async(void* dst, const void* src, size_t bytes, Stream stream) {
  return cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)),
                     fmt::format("copying {} bytes device to host", bytes));
}
Status copy_device_to_device_async(void* dst, const void* src, size_t bytes, Stream stream) {
  return cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)),
                     fmt::format("copying {} bytes device to device", bytes));
}

Result<bool> is_pageable_host(const void* p) {
  cudaPointerAttributes a{};
  const cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky; clear it so the next check does not report it
    return cuda::check(e, "cudaPointerGetAttributes (is it a valid address?)");
  }
  return a.type == cudaMemoryTypeUnregistered;
}

Result<Stream> stream_create() {
  cudaStream_t s = nullptr;
  Status st = cuda::check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  if (!st.is_ok()) return st;
  return static_cast<Stream>(s);
}
Status stream_destroy(Stream s) { return cuda::check(cudaStreamDestroy(as_stream(s)), "cudaStreamDestroy"); }

Status stream_synchronize(Stream s, bool spin) {
  if (!spin) return cuda::check(cudaStreamSynchronize(as_stream(s)), "cudaStreamSynchronize");
  for (;;) {
    const cudaError_t e = cudaStreamQuery(as_stream(s));
    if (e == cudaSuccess) return Status::ok();
    if (e != cudaErrorNotReady) return cuda::check(e, "cudaStreamQuery");
  }
}

Status device_synchronize() { return cuda::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

Result<Event> event_create() {
  cudaEvent_t e = nullptr;
  Status s = cuda::check(cudaEventCreate(&e), "cudaEventCreate");
  if (!s.is_ok()) return s;
  return static_cast<Event>(e);
}
Status event_destroy(Event e) { return cuda::check(cudaEventDestroy(as_event(e)), "cudaEventDestroy"); }
Status event_record(Event e, Stream s) {
  return cuda::check(cudaEventRecord(as_event(e), as_stream(s)), "cudaEventRecord");
}
Status stream_wait_event(Stream s, Event e) {
  return cuda::check(cudaStreamWaitEvent(as_stream(s), as_event(e), 0), "cudaStreamWaitEvent");
}
Status event_synchronize(Event e, bool spin) {
  if (!spin) return cuda::check(cudaEventSynchronize(as_event(e)), "cudaEventSynchronize");
  for (;;) {
    const cudaError_t err = cudaEventQuery(as_event(e));
    if (err == cudaSuccess) return Status::ok();
    if (err != cudaErrorNotReady) return cuda::check(err, "cudaEventQuery");
  }
}
Result<float> event_elapsed_ms(Event start, Event end) {
  float ms = 0;
  Status s = cuda::check(cudaEventElapsedTime(&ms, as_event(start), as_event(end)), "cudaEventElapsedTime");
  if (!s.is_ok()) return s;
  return ms;
}

#else  // no CUDA backend in this build

namespace {
Status no_cuda() {
  return Status(StatusCode::kUnsupported, "this build of Kiln has no CUDA backend (configure with -DKILN_CUDA=ON)");
}
}  // namespace

bool available() { return false; }
Result<std::string> describe_device() { return no_cuda(); }
Result<int> driver_version() { return no_cuda(); }
Result<size_t> device_memory_used() { return no_cuda(); }
Result<void*> device_alloc(size_t) { return no_cuda(); }
Status device_free(void*) { return no_cuda(); }
Result<void*> host_alloc_pinned(size_t) { return no_cuda(); }
Status host_free_pinned(void*) { return no_cuda(); }
Status memset_async(void*, int, size_t, Stream) { return no_cuda(); }
Status copy_to_device_async(void*, const void*, size_t, Stream) { return no_cuda(); }
Status copy_to_host_async(void*, const void*, size_t, Stream) { return no_cuda(); }
Result<bool> is_pageable_host(const void*) { return no_cuda(); }
Status copy_device_to_device_async(void*, const void*, size_t, Stream) { return no_cuda(); }
Result<Stream> stream_create() { return no_cuda(); }
Status stream_destroy(Stream) { return no_cuda(); }
Status stream_synchronize(Stream, bool) { return no_cuda(); }
Status device_synchronize() { return no_cuda(); }
Result<Event> event_create() { return no_cuda(); }
Status event_destroy(Event) { return no_cuda(); }
Status event_record(Event, Stream) { return no_cuda(); }
Status event_synchronize(Event, bool) { return no_cuda(); }
Status stream_wait_event(Stream, Event) { return no_cuda(); }
Result<float> event_elapsed_ms(Event, Event) { return no_cuda(); }

#endif

}  // namespace kiln::gpu
