// Transpose for any dtype (moves 1-, 2-, 4- or 8-byte elements). reshape() drops unit dims and merges
// output dims that stay adjacent in the input (backends/layout_plan.h), so common cases shrink to a 2-D or
// 3-D walk; the walk is tiled over the two innermost output dims to keep both reads and writes
// cache-friendly.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "backends/layout_plan.h"
#include "ops/op_util.h"
#include "ops/transpose.h"

namespace kiln::cpu {
namespace {

constexpr const char* kName = "cpu.any.transpose";
constexpr int64_t kTile = 32;

template <class T>
void transpose_walk(const T* x, T* y, const Dims& dims, const Dims& in_strides) {
  const size_t rank = dims.size();
  const int64_t rows = dims[rank - 2], cols = dims[rank - 1];
  const int64_t rs = in_strides[rank - 2], cs = in_strides[rank - 1];
  int64_t outer = 1;
  for (size_t d = 0; d + 2 < rank; ++d) outer *= dims[d];
  const int64_t total = outer * rows * cols;
#pragma omp parallel for collapse(2) if (total >= kParallelThreshold) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
      int64_t base = 0, rem = o;
      for (size_t d = rank - 2; d-- > 0;) {
        base += (rem % dims[d]) * in_strides[d];
        rem /= dims[d];
      }
      T* yo = y + o * rows * cols;
      const int64_t r1 = std::min(rows, r0 + kTile);
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        const int64_t c1 = std::min(cols, c0 + kTile);
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) yo[r * cols + c] = x[base + r * rs + c * cs];
      }
    }
  }
}

class TransposeKernel final : public CpuKernel {
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
    dims_ = plan.dims;
    strides_ = plan.in_strides;
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    if (total_ <= 0) return Status::ok();
    if (is_copy_) {
      std::memcpy(outputs[0], inputs[0], static_cast<size_t>(total_) * elem_);
      return Status::ok();
    }
    switch (elem_) {
      case 1: transpose_walk(static_cast<const uint8_t*>(inputs[0]), static_cast<uint8_t*>(outputs[0]), dims_, strides_); break;
      case 2: transpose_walk(static_cast<const uint16_t*>(inputs[0]), static_cast<uint16_t*>(outputs[0]), dims_, strides_); break;
      case 4: transpose_walk(static_cast<const uint32_t*>(inputs[0]), static_cast<uint32_t*>(outputs[0]), dims_, strides_); break;
      default: transpose_walk(static_cast<const uint64_t*>(inputs[0]), static_cast<uint64_t*>(outputs[0]), dims_, strides_); break;
    }
    return Status::ok();
  }

 private:
  std::optional<std::vector<int64_t>> perm_attr_;
  size_t elem_;
  Dims dims_, strides_;
  int64_t total_ = 0;
  bool is_copy_ = false;
};

CpuKernelDef transpose_kernel_def() {
  CpuKernelDef def;
  def.name = kName;
  def.op_type = "Transpose";
  def.supports = [](const Node& node, const Graph& graph) { return require_word_dtype(node, graph, kName); };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    auto perm = perm_attribute(init.node);
    if (!perm.is_ok()) return perm.status();
    const DataType dt = init.graph.values[init.node.inputs[0]].dtype;
    return std::unique_ptr<CpuKernel>(std::make_unique<TransposeKernel>(std::move(perm).value(), dtype_size(dt)));
  };
  return def;
}

const KernelRegistrar kTranspose{transpose_kernel_def()};

}  // namespace
}  // namespace kiln::cpu
