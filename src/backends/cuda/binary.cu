// Add/Sub/Mul/Div for float32, float16, int32 and int64 with numpy broadcasting. reshape() merges the
// broadcast into the fewest dims (backends/layout_plan.h); a one-dim plan (same shapes, or a scalar side)
// runs a flat loop, anything else a loop that maps each output index to both operands' offsets, in 32-bit
// arithmetic when the output fits. The formulas are apply_binary's (ops/elementwise.h), shared with the
// CPU kernel: integer ops wrap, integer Div truncates and gives 0 for x / 0. float16 computes in float
// and rounds once, to nearest even.
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "backends/cuda/cuda_kernel.h"
#include "backends/layout_plan.h"
#include "ops/elementwise.h"

namespace kiln::cuda {
namespace {

constexpr int kMaxRank = 8;
constexpr int kBlock = 256;

// The merged plan by value, right-aligned: dims [kMaxRank - rank, kMaxRank) are used, so the unrolled
// index loop below addresses the arrays with constants.
struct BroadcastParams {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t sa[kMaxRank] = {}, sb[kMaxRank] = {};
};

template <BinaryOp Op, class T>
__device__ __forceinline__ T binary_value(T a, T b) {
  if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(apply_binary<Op>(__half2float(a), __half2float(b)));
  else
    return apply_binary<Op>(a, b);
}

// One-dim plan: strides are 0 (broadcast scalar) or 1.
template <BinaryOp Op, class T>
__global__ void binary_flat(const T* a, const T* b, T* y, int64_t n, int64_t sa, int64_t sb) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = binary_value<Op>(a[i * sa], b[i * sb]);
}

// Index is uint32_t when the output has < 2^31 elements (then so do both operands, and the grid stride
// cannot wrap), else uint64_t.
template <BinaryOp Op, class T, class Index>
__global__ void binary_broadcast(const T* a, const T* b, T* y, BroadcastParams p, Index n) {
  const int first = kMaxRank - p.rank;
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < n; i += Index(gridDim.x) * blockDim.x) {
    Index rem = i, oa = 0, ob = 0;
#pragma unroll
    for (int d = kMaxRank - 1; d >= 0; --d) {
      if (d < first) break;
      const Index dim = static_cast<Index>(p.dims[d]);
      const Index q = rem / dim;
      const Index idx = rem - q * dim;
      rem = q;
      oa += idx * static_cast<Index>(p.sa[d]);
      ob += idx * static_cast<Index>(p.sb[d]);
    }
    y[i] = binary_value<Op>(a[oa], b[ob]);
  }
}

template <BinaryOp Op, class T>
class BinaryKernel final : public CudaKernel {
 public:
  explicit BinaryKernel(std::string name) : name_(std::move(name)) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    const BroadcastPlan plan = make_broadcast_plan(inputs[0].shape, inputs[1].shape, outputs[0].shape);
    total_ = plan.total;
    if (total_ <= 0) return Status::ok();
    const int rank = static_cast<int>(plan.dims.size());
    if (rank > kMaxRank)  // supports() bounds the rank; merging only lowers it
      return Status(StatusCode::kUnsupported, cat(name_, ": broadcast of rank ", rank, " exceeds ", kMaxRank));
    params_ = BroadcastParams{};
    params_.rank = rank;
    for (int d = 0; d < rank; ++d) {
      params_.dims[kMaxRank - rank + d] = plan.dims[d];
      params_.sa[kMaxRank - rank + d] = plan.sa[d];
      params_.sb[kMaxRank - rank + d] = plan.sb[d];
    }
    return Status::ok();
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) override {
    if (total_ <= 0) return Status::ok();
    const T* a = static_cast<const T*>(inputs[0]);
    const T* b = static_cast<const T*>(inputs[1]);
    T* y = static_cast<T*>(outputs[0]);
    const unsigned grid = grid_for(total_, kBlock);
    if (params_.rank == 1) {
      binary_flat<Op><<<grid, kBlock, 0, stream>>>(a, b, y, total_, params_.sa[kMaxRank - 1],
                                                   params_.sb[kMaxRank - 1]);
      return check_launch(name_);
    }
    if (total_ <= INT32_MAX)
      binary_broadcast<Op, T, uint32_t><<<grid, kBlock, 0, stream>>>(a, b, y, params_, static_cast<uint32_t>(total_));
    else
      binary_broadcast<Op, T, uint64_t><<<grid, kBlock, 0, stream>>>(a, b, y, params_, static_cast<uint64_t>(total_));
    return check_launch(name_);
  }

 private:
  std::string name_;
  int64_t total_ = 0;
  BroadcastParams params_;
};

template <BinaryOp Op, class T>
KernelDef binary_kernel_def(const char* stem, const char* op_type, DataType dtype) {
  KernelDef def;
  def.name = cat(stem, ".", op_type);
  def.op_type = op_type;
  def.supports = [name = def.name, dtype](const Node& node, const Graph& graph) {
    Status s = require_dtypes(node, graph, {dtype}, name);
    if (!s.is_ok()) return s;
    return require_max_rank(node, graph, kMaxRank, name);
  };
  def.create = [name = def.name](const KernelInit&) -> Result<std::unique_ptr<CudaKernel>> {
    return std::unique_ptr<CudaKernel>(std::make_unique<BinaryKernel<Op, T>>(name));
  };
  return def;
}

template <class T>
void register_binary(const char* stem, DataType dtype) {
  static const KernelRegistrar add{binary_kernel_def<BinaryOp::kAdd, T>(stem, "Add", dtype)};
  static const KernelRegistrar sub{binary_kernel_def<BinaryOp::kSub, T>(stem, "Sub", dtype)};
  static const KernelRegistrar mul{binary_kernel_def<BinaryOp::kMul, T>(stem, "Mul", dtype)};
  static const KernelRegistrar div{binary_kernel_def<BinaryOp::kDiv, T>(stem, "Div", dtype)};
}

const bool kRegistered = [] {
  register_binary<float>("cuda.f32.binary", DataType::kFloat32);
  register_binary<__half>("cuda.f16.binary", DataType::kFloat16);
  register_binary<int32_t>("cuda.i32.binary", DataType::kInt32);
  register_binary<int64_t>("cuda.i64.binary", DataType::kInt64);
  return true;
}();

}  // namespace
}  // namespace kiln::cuda
