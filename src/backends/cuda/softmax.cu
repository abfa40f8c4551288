// Softmax on float32 and float16 over the [outer, len, inner] view of ops/softmax.h (opset < 13 flattens
// to 2-D, opset >= 13 normalizes one axis). Each row is max-subtract, exp, sum, scale, as on the CPU: the
// max and the exponentials in float, the sum in double for float32 (so 70000-long rows keep ~1e-7
// accuracy) and in float for float16. Contiguous rows (inner == 1) take one warp per row up to
// kWarpRowMax elements and one block per row beyond; strided rows take one thread per (outer, inner)
// column, consecutive threads on consecutive columns so that loads coalesce.
#include <cuda_fp16.h>

#include <cmath>
#include <type_traits>

#include "backends/cuda/cuda_kernel.h"
#include "ops/softmax.h"

namespace kiln::cuda {
namespace {

constexpr int64_t kWarpRowMax = 1024;
constexpr int kBlock = 256;          // warp-per-row and strided kernels
constexpr int kRowBlock = 512;       // block-per-row kernel

template <class T>
using Accum = std::conditional_t<std::is_same_v<T, float>, double, float>;

__device__ __forceinline__ float load_float(float v) { return v; }
__device__ __forceinline__ float load_float(__half v) { return __half2float(v); }
template <class T>
__device__ __forceinline__ T store_float(float v) {
  if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else return v;
}

struct MaxOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return fmaxf(a, b); }  // ignores NaN, like the CPU's std::max
};
struct SumOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a + b; }
};

template <class V, class Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Every thread of the block gets the result. smem holds one value per warp; the leading barrier keeps
// a previous call's readers from seeing it overwritten.
template <class V, class Op>
__device__ V block_reduce(V v, Op op, V* smem) {
  v = warp_reduce(v, op);
  const int warps = blockDim.x / 32;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) smem[threadIdx.x / 32] = v;
  __syncthreads();
  V r = smem[0];
  for (int w = 1; w < warps; ++w) r = op(r, smem[w]);
  return r;
}

// One warp per contiguous row; every lane of a warp shares the row index, so the shuffles are uniform.
template <class T>
__global__ void softmax_warp_rows(const T* x, T* y, int64_t rows, int64_t len) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x / 32;
  for (int64_t r = blockIdx.x * warps_per_block + threadIdx.x / 32; r < rows; r += gridDim.x * warps_per_block) {
    const T* xr = x + r * len;
    T* yr = y + r * len;
    float mx = -INFINITY;
    for (int64_t l = lane; l < len; l += 32) mx = fmaxf(mx, load_float(xr[l]));
    mx = warp_reduce(mx, MaxOp{});
    Accum<T> sum = 0;
    for (int64_t l = lane; l < len; l += 32) sum += expf(load_float(xr[l]) - mx);
    sum = warp_reduce(sum, SumOp{});
    const float scale = static_cast<float>(Accum<T>(1) / sum);
    for (int64_t l = lane; l < len; l += 32) yr[l] = store_float<T>(expf(load_float(xr[l]) - mx) * scale);
  }
}

// One block (kRowBlock threads) per contiguous row.
template <class T>
__global__ void softmax_block_rows(const T* x, T* y, int64_t rows, int64_t len) {
  __shared__ float smax[32];
  __shared__ Accum<T> ssum[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * len;
    T* yr = y + r * len;
    float mx = -INFINITY;
    for (int64_t l = threadIdx.x; l < len; l += blockDim.x) mx = fmaxf(mx, load_float(xr[l]));
    mx = block_reduce(mx, MaxOp{}, smax);
    Accum<T> sum = 0;
    for (int64_t l = threadIdx.x; l < len; l += blockDim.x) sum += expf(load_float(xr[l]) - mx);
    sum = block_reduce(sum, SumOp{}, ssum);
    const float scale = static_cast<float>(Accum<T>(1) / sum);
    for (int64_t l = threadIdx.x; l < len; l += blockDim.x) yr[l] = store_float<T>(expf(load_float(xr[l]) - mx) * scale);
  }
}

// One thread per (o, i) column of a strided row: elements x[o][l][i] for l < len.
template <class T>
__global__ void softmax_strided(const T* x, T* y, int64_t outer, int64_t len, int64_t inner) {
  const int64_t cols = outer * inner;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = c / inner, i = c - o * inner;
    const T* xc = x + o * len * inner + i;
    T* yc = y + o * len * inner + i;
    float mx = -INFINITY;
    for (int64_t l = 0; l < len; ++l) mx = fmaxf(mx, load_float(xc[l * inner]));
    Accum<T> sum = 0;
    for (int64_t l = 0; l < len; ++l) sum += expf(load_float(xc[l * inner]) - mx);
    const float scale = static_cast<float>(Accum<T>(1) / sum);
    for (int64_t l = 0; l < len; ++l) yc[l * inner] = store_float<T>(expf(load_float(xc[l * inner]) - mx) * scale);
  }
}

template <class T>
class SoftmaxKernel final : public CudaKernel {
 public:
  SoftmaxKernel(std::string name, SoftmaxAttrs attrs) : name_(std::move(name)), attrs_(attrs) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    auto e = softmax_extent(attrs_, inputs[0].shape);
    if (!e.is_ok()) return e.status();
    ext_ = *e;
    return Status::ok();
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) override {
    const int64_t outer = ext_.outer, len = ext_.len, inner = ext_.inner;
    if (outer <= 0 || len <= 0 || inner <= 0) return Status::ok();
    const T* x = static_cast<const T*>(inputs[0]);
    T* y = static_cast<T*>(outputs[0]);
    if (inner > 1) {
      softmax_strided<<<grid_for(outer * inner, kBlock), kBlock, 0, stream>>>(x, y, outer, len, inner);
    } else if (len <= kWarpRowMax) {
      softmax_warp_rows<<<grid_for(outer * 32, kBlock), kBlock, 0, stream>>>(x, y, outer, len);
    } else {
      softmax_block_rows<<<grid_for(outer, 1), kRowBlock, 0, stream>>>(x, y, outer, len);
    }
    return check_launch(name_);
  }

 private:
  std::string name_;
  SoftmaxAttrs attrs_;
  SoftmaxExtent ext_;
};

template <class T>
KernelDef softmax_kernel_def(const char* name, DataType dtype) {
  KernelDef def;
  def.name = name;
  def.op_type = "Softmax";
  def.supports = [name = def.name, dtype](const Node& node, const Graph& graph) {
    return require_dtypes(node, graph, {dtype}, name);
  };
  def.create = [name = def.name](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    auto attrs = SoftmaxAttrs::parse(init.node);
    if (!attrs.is_ok()) return attrs.status();
    return std::unique_ptr<CudaKernel>(std::make_unique<SoftmaxKernel<T>>(name, *attrs));
  };
  return def;
}

const KernelRegistrar kSoftmaxF32{softmax_kernel_def<float>("cuda.f32.softmax", DataType::kFloat32)};
const KernelRegistrar kSoftmaxF16{softmax_kernel_def<__half>("cuda.f16.softmax", DataType::kFloat16)};

}  // namespace
}  // namespace kiln::cuda
