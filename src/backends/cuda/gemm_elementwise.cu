// Elementwise helpers for the cuBLASLt GEMM kernels: C broadcast into D (for C shapes the bias epilogue
// cannot express), activations cuBLASLt has no exact epilogue for, random fill for tactic timing.
#include <cuda_fp16.h>

#include <type_traits>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/gemm_elementwise.h"

namespace kiln::cuda {
namespace {

__device__ __forceinline__ float load_f(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store_f(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

template <class TC, class TD>
__global__ void broadcast_c(const TC* c, int64_t rs, int64_t cs, float scale, TD* d, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx / cols, j = idx - i * cols;
    store_f(d, idx, c ? scale * load_f(c, i * rs + j * cs) : 0.f);
  }
}

template <class T>
__global__ void activation(T* d, int64_t n, Activation act, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store_f(d, i, activate(act, load_f(d, i), alpha));
}

template <class T>
__global__ void fill_random(T* p, int64_t n, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * uint64_t(i + 1);  // splitmix64
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    if constexpr (std::is_integral_v<T>) {
      const T v = static_cast<T>(1 + (z >> 40) % 127);
      p[i] = (z & 1) ? T(-v) : v;
    } else {
      const float u = float(z >> 40) * (1.f / 16777216.f);  // [0, 1)
      const float v = 0.125f + 0.875f * u;
      store_f(p, i, (z & 1) ? -v : v);
    }
  }
}

bool is_float_type(DataType dt) { return dt == DataType::kFloat32 || dt == DataType::kFloat16; }

Status bad_dtype(const char* what, DataType dt) {
  return Status(StatusCode::kInternal, cat(what, ": dtype code ", int(dt), " is not float32/float16"));
}

}  // namespace

Status launch_broadcast_c(const void* c, DataType c_dtype, int64_t c_row_stride, int64_t c_col_stride, float scale,
                          void* d, DataType d_dtype, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows * cols <= 0) return Status::ok();
  if (c && !is_float_type(c_dtype)) return bad_dtype("broadcast_c (C)", c_dtype);
  if (!is_float_type(d_dtype)) return bad_dtype("broadcast_c (D)", d_dtype);
  const unsigned grid = grid_for(rows * cols, 256);
  const bool c16 = c_dtype == DataType::kFloat16, d16 = d_dtype == DataType::kFloat16;
  if (c16 && d16)
    broadcast_c<<<grid, 256, 0, stream>>>(static_cast<const __half*>(c), c_row_stride, c_col_stride, scale,
                                          static_cast<__half*>(d), rows, cols);
  else if (c16)
    broadcast_c<<<grid, 256, 0, stream>>>(static_cast<const __half*>(c), c_row_stride, c_col_stride, scale,
                                          static_cast<float*>(d), rows, cols);
  else if (d16)
    broadcast_c<<<grid, 256, 0, stream>>>(static_cast<const float*>(c), c_row_stride, c_col_stride, scale,
                                          static_cast<__half*>(d), rows, cols);
  else
    broadcast_c<<<grid, 256, 0, stream>>>(static_cast<const float*>(c), c_row_stride, c_col_stride, scale,
                                          static_cast<float*>(d), rows, cols);
  return check_launch(cat("broadcast_c [", rows, "x", cols, "]"));
}

Status launch_activation(void* d, DataType dtype, int64_t n, Activation act, float alpha, cudaStream_t stream) {
  if (n <= 0 || act == Activation::kNone) return Status::ok();
  if (!is_float_type(dtype)) return bad_dtype("activation", dtype);
  const unsigned grid = grid_for(n, 256);
  if (dtype == DataType::kFloat16)
    activation<<<grid, 256, 0, stream>>>(static_cast<__half*>(d), n, act, alpha);
  else
    activation<<<grid, 256, 0, stream>>>(static_cast<float*>(d), n, act, alpha);
  return check_launch(cat("activation ", activation_name(act), " on ", n, " elements"));
}

Status launch_fill_random(void* p, DataType dtype, int64_t n, uint64_t seed, cudaStream_t stream) {
  if (n <= 0) return Status::ok();
  const unsigned grid = grid_for(n, 256);
  switch (dtype) {
    case DataType::kFloat16: fill_random<<<grid, 256, 0, stream>>>(static_cast<__half*>(p), n, seed); break;
    case DataType::kFloat32: fill_random<<<grid, 256, 0, stream>>>(static_cast<float*>(p), n, seed); break;
    case DataType::kInt8: fill_random<<<grid, 256, 0, stream>>>(static_cast<int8_t*>(p), n, seed); break;
    case DataType::kInt32: fill_random<<<grid, 256, 0, stream>>>(static_cast<int32_t*>(p), n, seed); break;
    default: return Status(StatusCode::kInternal, cat("fill_random: dtype code ", int(dtype), " is not supported"));
  }
  return check_launch("fill_random");
}

}  // namespace kiln::cuda
