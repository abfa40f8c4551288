// CUDA helpers shared by the backend: error checking that returns Status (with what was being done),
// the description of a GPU that engines record, and small launch helpers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <string_view>

#include "backends/kernel_checks.h"
#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::cuda {

// Ok, or kRuntimeError "<what>: <cuda error name>: <description>".
Status check(cudaError_t err, std::string_view what);
// Device memory owned for a scope (build-time scratch: tuning operands, uploaded constants). alloc takes at
// least 256 bytes, so that a zero-byte request still yields a valid, aligned pointer.
struct DeviceBuffer {
  void* p = nullptr;
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();
  // Ok, or the error "<what>: cudaMalloc of N bytes: ...".
  Status alloc(size_t bytes, std::string_view what);
};

// Checks the last launch error (cudaGetLastError) after a kernel launch.
Status check_launch(std::string_view kernel);

// The GPU an engine was built for, or the one found at load time.
struct DeviceInfo {
  int ordinal = 0;
  std::string name;        // "NVIDIA H100 80GB HBM3"
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int cuda_runtime = 0;    // cudaRuntimeGetVersion, e.g. 13000
  int cuda_driver = 0;     // cudaDriverGetVersion
  size_t total_memory = 0;
  size_t l2_bytes = 0;

  std::string compute_capability() const { return std::to_string(cc_major) + "." + std::to_string(cc_minor); }
  // "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, CUDA 13.0)"
  std::string describe() const;
};

// What an engine records about the GPU it was built for (JSON object text).
std::string device_json(const DeviceInfo& d);

// The current device's description, or an error naming why no GPU can be used (no driver, no device).
Result<DeviceInfo> current_device();

// Message building for .cu files, which cannot include fmt (nvcc 13 rejects its consteval format
// checks): cat("layer ", name, " has ", n, " inputs").
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// Ok when input 0 (and every other present input when all_inputs) has one of the dtypes; otherwise e.g.
// Elements -> blocks for a 1-D grid-stride launch; capped so grids stay reasonable.
inline unsigned grid_for(int64_t n, int block, int64_t max_blocks = 65535 * 4) {
  int64_t b = (n + block - 1) / block;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

}  // namespace kiln::cuda
