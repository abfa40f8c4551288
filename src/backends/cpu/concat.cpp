// Concat for any dtype: per outer index, each input contributes one contiguous chunk of bytes.
#include <cstring>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "ops/concat.h"

namespace kiln::cpu {
namespace {

constexpr const char* kName = "cpu.any.concat";

class ConcatKernel final : public CpuKernel {
 public:
  ConcatKernel(const Node& node, size_t elem) : node_(node), elem_(elem) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    std::vector<Dims> shapes;
    for (const auto& d : inputs) shapes.push_back(d.shape);
    auto out = concat_shape(node_, shapes);
    if (!out.is_ok()) return out.status();
    const int64_t axis = concat_axis(node_, out->size()).value();
    outer_ = 1;
    for (int64_t d = 0; d < axis; ++d) outer_ *= (*out)[d];
    out_row_bytes_ = outer_ == 0 ? 0 : static_cast<size_t>(volume(*out) / outer_) * elem_;
    chunk_bytes_.clear();
    for (const auto& s : shapes)
      chunk_bytes_.push_back(outer_ == 0 ? 0 : static_cast<size_t>(volume(s) / outer_) * elem_);
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    uint8_t* y = static_cast<uint8_t*>(outputs[0]);
    const int64_t outer = outer_;
    const size_t n_in = chunk_bytes_.size();
#pragma omp parallel for if (static_cast<int64_t>(out_row_bytes_) * outer >= kParallelThreshold * 4) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      uint8_t* dst = y + static_cast<size_t>(o) * out_row_bytes_;
      for (size_t i = 0; i < n_in; ++i) {
        const size_t n = chunk_bytes_[i];
        if (n == 0) continue;
        std::memcpy(dst, static_cast<const uint8_t*>(inputs[i]) + static_cast<size_t>(o) * n, n);
        dst += n;
      }
    }
    return Status::ok();
  }

 private:
  Node node_;  // copied: attributes are read again when shapes change
  size_t elem_;
  int64_t outer_ = 0;
  size_t out_row_bytes_ = 0;
  std::vector<size_t> chunk_bytes_;
};

CpuKernelDef concat_kernel_def() {
  CpuKernelDef def;
  def.name = kName;
  def.op_type = "Concat";
  def.supports = [](const Node& node, const Graph& graph) { return require_word_dtype(node, graph, kName); };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    const DataType dt = init.graph.values[init.node.inputs[0]].dtype;
    return std::unique_ptr<CpuKernel>(std::make_unique<ConcatKernel>(init.node, dtype_size(dt)));
  };
  return def;
}

const KernelRegistrar kConcat{concat_kernel_def()};

}  // namespace
}  // namespace kiln::cpu
