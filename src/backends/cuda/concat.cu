// Concat for any dtype, any axis and any number of inputs. Per outer index (the dims before the axis)
// each input contributes one contiguous chunk of bytes to the output row; each input is one launch that
// copies its [outer, chunk] block into its column range of the [outer, row] output, in the widest word
// (16, 8, 4, 2 or 1 bytes) that the chunk, the row, the column offset and both addresses are aligned to.
// When every dim before the axis is 1 (outer == 1), each input is one memcpy.
#include <cstdint>

#include "backends/cuda/cuda_kernel.h"
#include "ops/concat.h"

namespace kiln::cuda {
namespace {

constexpr const char* kName = "cuda.any.concat";
constexpr int kBlock = 256;

// dst[o * row + j] = src[o * chunk + j] for o < outer, j < chunk (in words; dst is at the column offset).
// Index is uint32_t when the output has < 2^31 words, else uint64_t.
template <class W, class Index>
__global__ void concat_block(const W* src, W* dst, Index outer, Index chunk, Index row) {
  const Index n = outer * chunk;
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < n; i += Index(gridDim.x) * blockDim.x) {
    const Index o = i / chunk;
    dst[o * row + (i - o * chunk)] = src[i];
  }
}

template <class W>
void launch_words(const void* src, void* dst, size_t word, int64_t outer, size_t chunk_bytes, size_t row_bytes,
                  cudaStream_t stream) {
  const int64_t chunk = static_cast<int64_t>(chunk_bytes / word), row = static_cast<int64_t>(row_bytes / word);
  const unsigned grid = grid_for(outer * chunk, kBlock);
  const W* s = static_cast<const W*>(src);
  W* d = static_cast<W*>(dst);
  if (outer * row <= INT32_MAX)
    concat_block<W, uint32_t><<<grid, kBlock, 0, stream>>>(s, d, static_cast<uint32_t>(outer),
                                                           static_cast<uint32_t>(chunk), static_cast<uint32_t>(row));
  else
    concat_block<W, uint64_t><<<grid, kBlock, 0, stream>>>(s, d, static_cast<uint64_t>(outer),
                                                           static_cast<uint64_t>(chunk), static_cast<uint64_t>(row));
}

class ConcatKernel final : public CudaKernel {
 public:
  ConcatKernel(const Node& node, size_t elem) : node_(node), elem_(elem) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    std::vector<Dims> shapes;
    for (const auto& d : inputs) shapes.push_back(d.shape);
    auto out = concat_shape(node_, shapes);
    if (!out.is_ok()) return out.status();
    auto axis = concat_axis(node_, out->size());
    if (!axis.is_ok()) return axis.status();
    outer_ = 1;
    for (int64_t d = 0; d < *axis; ++d) outer_ *= (*out)[d];
    row_bytes_ = outer_ <= 0 ? 0 : static_cast<size_t>(volume(*out) / outer_) * elem_;
    chunk_bytes_.clear();
    for (const auto& s : shapes)
      chunk_bytes_.push_back(outer_ <= 0 ? 0 : static_cast<size_t>(volume(s) / outer_) * elem_);
    return Status::ok();
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) override {
    if (outer_ <= 0 || row_bytes_ == 0) return Status::ok();
    uint8_t* y = static_cast<uint8_t*>(outputs[0]);
    size_t offset = 0;  // column offset of input i within an output row, in bytes
    for (size_t i = 0; i < chunk_bytes_.size(); ++i) {
      const size_t chunk = chunk_bytes_[i];
      if (chunk == 0) continue;
      uint8_t* dst = y + offset;
      offset += chunk;
      if (outer_ == 1) {
        Status s = check(cudaMemcpyAsync(dst, inputs[i], chunk, cudaMemcpyDeviceToDevice, stream),
                         cat(kName, ": copying input ", i));
        if (!s.is_ok()) return s;
        continue;
      }
      // The widest word that divides every byte quantity and address involved.
      const uint64_t bits = chunk | row_bytes_ | (offset - chunk) | reinterpret_cast<uintptr_t>(inputs[i]) |
                            reinterpret_cast<uintptr_t>(y);
      const size_t word = bits % 16 == 0 ? 16 : bits % 8 == 0 ? 8 : bits % 4 == 0 ? 4 : bits % 2 == 0 ? 2 : 1;
      switch (word) {
        case 16: launch_words<uint4>(inputs[i], dst, word, outer_, chunk, row_bytes_, stream); break;
        case 8: launch_words<uint64_t>(inputs[i], dst, word, outer_, chunk, row_bytes_, stream); break;
        case 4: launch_words<uint32_t>(inputs[i], dst, word, outer_, chunk, row_bytes_, stream); break;
        case 2: launch_words<uint16_t>(inputs[i], dst, word, outer_, chunk, row_bytes_, stream); break;
        default: launch_words<uint8_t>(inputs[i], dst, word, outer_, chunk, row_bytes_, stream); break;
      }
      Status s = check_launch(kName);
      if (!s.is_ok()) return s;
    }
    return Status::ok();
  }

 private:
  Node node_;  // copied: attributes are read again when shapes change
  size_t elem_;
  int64_t outer_ = 0;
  size_t row_bytes_ = 0;
  std::vector<size_t> chunk_bytes_;
};

KernelDef concat_kernel_def() {
  KernelDef def;
  def.name = kName;
  def.op_type = "Concat";
  def.supports = [](const Node& node, const Graph& graph) { return require_word_dtype(node, graph, kName); };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    const DataType dt = init.graph.values[init.node.inputs[0]].dtype;
    return std::unique_ptr<CudaKernel>(std::make_unique<ConcatKernel>(init.node, dtype_size(dt)));
  };
  return def;
}

const KernelRegistrar kConcat{concat_kernel_def()};

}  // namespace
}  // namespace kiln::cuda
