#include "backends/cuda/cuda_util.h"

#include <algorithm>

#include <fmt/format.h>


namespace kiln::cuda {

DeviceBuffer::~DeviceBuffer() {
  if (p) cudaFree(p);
}

Status DeviceBuffer::alloc(size_t bytes, std::string_view what) {
  return check(cudaMalloc(&p, std::max<size_t>(bytes, 256)), fmt::format("{}: cudaMalloc of {} bytes", what, bytes));
}

Status check(cudaError_t err, std::string_view what) {
  if (err == cudaSuccess) return Status::ok();
  return Status(StatusCode::kRuntimeError,
                fmt::format("{}: {}: {}", what, cudaGetErrorName(err), cudaGetErrorString(err)));
}

Status check_launch(std::string_view kernel) {
  return check(cudaGetLastError(), fmt::format("launching {}", kernel));
}

std::string DeviceInfo::describe() const {
  return fmt::format("{} (sm_{}{}, {} SMs, CUDA {}.{})", name, cc_major, cc_minor, sm_count, cuda_runtime / 1000,
                     cuda_runtime % 1000 / 10);
}

Result<DeviceInfo> current_device() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return Status(StatusCode::kUnsupported,
                  fmt::format("no usable NVIDIA GPU: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err)));
  }
  if (count == 0) return Status(StatusCode::kUnsupported, "no usable NVIDIA GPU: no CUDA device is present");
  DeviceInfo d;
  Status s = check(cudaGetDevice(&d.ordinal), "cudaGetDevice");
  if (!s.is_ok()) return s;
  cudaDeviceProp p{};
  s = check(cudaGetDeviceProperties(&p, d.ordinal), "cudaGetDeviceProperties");
  if (!s.is_ok()) return s;
  d.name = p.name;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  d.total_memory = p.totalGlobalMem;
  d.l2_bytes = static_cast<size_t>(p.l2CacheSize);
  s = check(cudaRuntimeGetVersion(&d.cuda_runtime), "cudaRuntimeGetVersion");
  if (!s.is_ok()) return s;
  s = check(cudaDriverGetVersion(&d.cuda_driver), "cudaDriverGetVersion");
  if (!s.is_ok()) return s;
  return d;
}

}  // namespace kiln::cuda
