// Transpose for any dtype, moving 1-, 2-, 4- or 8-byte elements. reshape() merges the permutation into
// the fewest output dims (backends/layout_plan.h). A one-dim walk is a memcpy. When the input's contiguous
// dim lands second to last in the output (2-D transposes, batched last-two swaps, NCHW <-> NHWC), 32x32
// tiles go through shared memory so that both the reads and the writes coalesce; any other walk gathers
// one output element per thread.
#include <cstdint>

#include "backends/cuda/cuda_kernel.h"
#include "backends/layout_plan.h"
#include "ops/transpose.h"

namespace kiln::cuda {
namespace {

constexpr const char* kName = "cuda.any.transpose";
constexpr int kMaxRank = 8;
constexpr int kBlock = 256;
constexpr int kTile = 32;
constexpr int kTileRows = 8;  // the tiled kernel's block is kTile x kTileRows threads

// The merged walk by value, right-aligned: dims [kMaxRank - rank, kMaxRank) are used, so unrolled
// loops address the arrays with constants.
struct WalkParams {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};
};

// Output index -> input offset over dims [first, last] of the walk, innermost first.
template <class Index>
__device__ __forceinline__ Index input_offset(Index i, const WalkParams& p, int last) {
  const int first = kMaxRank - p.rank;
  Index off = 0;
#pragma unroll
  for (int d = kMaxRank - 1; d >= 0; --d) {
    if (d > last) continue;
    if (d < first) break;
    const Index dim = static_cast<Index>(p.dims[d]);
    const Index q = i / dim;
    off += (i - q * dim) * static_cast<Index>(p.in_strides[d]);
    i = q;
  }
  return off;
}

// Index is uint32_t when the tensor has < 2^31 elements (the grid stride cannot wrap), else uint64_t.
template <class T, class Index>
__global__ void transpose_gather(const T* x, T* y, WalkParams p, Index n) {
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < n; i += Index(gridDim.x) * blockDim.x)
    y[i] = x[input_offset(i, p, kMaxRank - 1)];
}

// Walk [batch..., rows, cols] whose rows dim has input stride 1: out[b][r][c] = x[base(b) + r + c * cs].
// Tiles are numbered (batch, row tile, col tile) and walked grid-stride, so the grid stays 1-D.
template <class T>
__global__ void transpose_tiled(const T* x, T* y, WalkParams p, int64_t tiles_r, int64_t tiles_c, int64_t tiles) {
  __shared__ T tile[kTile][kTile + 1];  // +1: column reads hit distinct banks
  const int64_t rows = p.dims[kMaxRank - 2], cols = p.dims[kMaxRank - 1];
  const int64_t cs = p.in_strides[kMaxRank - 1];
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t b = t / (tiles_r * tiles_c);
    const int64_t rc = t - b * (tiles_r * tiles_c);
    const int64_t r0 = rc / tiles_c * kTile, c0 = rc % tiles_c * kTile;
    const T* xb = x + input_offset<uint64_t>(b, p, kMaxRank - 3);
    // Read: threadIdx.x runs along r, contiguous in the input. tile[j][k] holds (r0 + k, c0 + j).
    for (int j = threadIdx.y; j < kTile; j += kTileRows) {
      const int64_t r = r0 + threadIdx.x, c = c0 + j;
      if (r < rows && c < cols) tile[j][threadIdx.x] = xb[r + c * cs];
    }
    __syncthreads();
    // Write: threadIdx.x runs along c, contiguous in the output.
    T* yb = y + b * rows * cols;
    for (int j = threadIdx.y; j < kTile; j += kTileRows) {
      const int64_t r = r0 + j, c = c0 + threadIdx.x;
      if (r < rows && c < cols) yb[r * cols + c] = tile[threadIdx.x][j];
    }
    __syncthreads();  // the next tile overwrites the shared tile
  }
}

class TransposeKernel final : public CudaKernel {
 public:
  TransposeKernel(std::optional<std::vector<int64_t>> perm_attr, size_t elem)
      : perm_attr_(std::move(perm_attr)), elem_(elem) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    const Dims& in = inputs[0].shape;
    auto perm = resolve_perm(perm_attr_, in.size());
    if (!perm.is_ok()) return perm.status();
    const TransposePlan plan = make_transpose_plan(in, *perm);
    total_ = plan.total;
    is_copy_ = plan.is_copy;
    if (total_ <= 0 || is_copy_) return Status::ok();
    const int rank = static_cast<int>(plan.dims.size());
    if (rank > kMaxRank)  // supports() bounds the rank; merging only lowers it
      return Status(StatusCode::kUnsupported, cat(kName, ": permutation walk of rank ", rank, " exceeds ", kMaxRank));
    params_ = WalkParams{};
    params_.rank = rank;
    for (int d = 0; d < rank; ++d) {
      params_.dims[kMaxRank - rank + d] = plan.dims[d];
      params_.in_strides[kMaxRank - rank + d] = plan.in_strides[d];
    }
    tiled_ = plan.in_strides[rank - 2] == 1;
    if (tiled_) {
      tiles_r_ = (plan.dims[rank - 2] + kTile - 1) / kTile;
      tiles_c_ = (plan.dims[rank - 1] + kTile - 1) / kTile;
      tiles_ = total_ / (plan.dims[rank - 2] * plan.dims[rank - 1]) * tiles_r_ * tiles_c_;
    }
    return Status::ok();
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) override {
    if (total_ <= 0) return Status::ok();
    if (is_copy_)
      return check(cudaMemcpyAsync(outputs[0], inputs[0], static_cast<size_t>(total_) * elem_,
                                   cudaMemcpyDeviceToDevice, stream),
                   cat(kName, ": copying ", total_, " elements"));
    switch (elem_) {
      case 1: launch<uint8_t>(inputs[0], outputs[0], stream); break;
      case 2: launch<uint16_t>(inputs[0], outputs[0], stream); break;
      case 4: launch<uint32_t>(inputs[0], outputs[0], stream); break;
      default: launch<uint64_t>(inputs[0], outputs[0], stream); break;
    }
    return check_launch(kName);
  }

 private:
  template <class T>
  void launch(const void* in, void* out, cudaStream_t stream) const {
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    if (tiled_) {
      transpose_tiled<T><<<grid_for(tiles_, 1), dim3(kTile, kTileRows), 0, stream>>>(x, y, params_, tiles_r_, tiles_c_,
                                                                                     tiles_);
    } else if (total_ <= INT32_MAX) {
      transpose_gather<T, uint32_t><<<grid_for(total_, kBlock), kBlock, 0, stream>>>(x, y, params_,
                                                                                     static_cast<uint32_t>(total_));
    } else {
      transpose_gather<T, uint64_t><<<grid_for(total_, kBlock), kBlock, 0, stream>>>(x, y, params_,
                                                                                     static_cast<uint64_t>(total_));
    }
  }

  std::optional<std::vector<int64_t>> perm_attr_;
  size_t elem_;
  int64_t total_ = 0;
  bool is_copy_ = false;
  bool tiled_ = false;
  int64_t tiles_r_ = 0, tiles_c_ = 0, tiles_ = 0;
  WalkParams params_;
};

KernelDef transpose_kernel_def() {
  KernelDef def;
  def.name = kName;
  def.op_type = "Transpose";
  def.supports = [](const Node& node, const Graph& graph) {
    Status s = require_word_dtype(node, graph, kName);
    if (!s.is_ok()) return s;
    return require_max_rank(node, graph, kMaxRank, kName);
  };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    auto perm = perm_attribute(init.node);
    if (!perm.is_ok()) return perm.status();
    const DataType dt = init.graph.values[init.node.inputs[0]].dtype;
    return std::unique_ptr<CudaKernel>(std::make_unique<TransposeKernel>(std::move(perm).value(), dtype_size(dt)));
  };
  return def;
}

const KernelRegistrar kTranspose{transpose_kernel_def()};

}  // namespace
}  // namespace kiln::cuda
