// Byte copy for the view ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout), used when the
// builder cannot alias output 0 to input 0. Dropout's optional mask output is filled with "true" (ones of
// the mask's dtype).
#include <cstring>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "ops/reference_eval.h"

namespace kiln::cpu {
namespace {

class CopyKernel final : public CpuKernel {
 public:
  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    bytes_ = static_cast<size_t>(std::max<int64_t>(volume(outputs[0].shape), 0)) * dtype_size(outputs[0].dtype);
    mask_elements_ = 0;
    if (outputs.size() > 1 && outputs[1].dtype != DataType::kUndefined) {
      mask_elements_ = std::max<int64_t>(volume(outputs[1].shape), 0);
      const Tensor one = tensor_from_ref(RefTensor{outputs[1].dtype, {}, {1.0}}, outputs[1].dtype);
      one_.assign(one.raw(), one.raw() + one.nbytes());
    }
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    if (bytes_ > 0 && outputs[0] != inputs[0]) std::memcpy(outputs[0], inputs[0], bytes_);
    if (mask_elements_ > 0 && outputs[1]) {
      uint8_t* m = static_cast<uint8_t*>(outputs[1]);
      const size_t e = one_.size();
      if (e == 1) std::memset(m, one_[0], static_cast<size_t>(mask_elements_));
      else
        for (int64_t i = 0; i < mask_elements_; ++i) std::memcpy(m + static_cast<size_t>(i) * e, one_.data(), e);
    }
    return Status::ok();
  }

 private:
  size_t bytes_ = 0;
  int64_t mask_elements_ = 0;
  std::vector<uint8_t> one_;  // the value "true"/1 in the mask dtype
};

CpuKernelDef copy_kernel_def(const char* op_type) {
  CpuKernelDef def;
  def.name = kernel_name("cpu.any.copy", op_type);
  def.op_type = op_type;
  def.supports = [name = def.name](const Node& node, const Graph& graph) {
    return require_word_dtype(node, graph, name);
  };
  def.create = [](const KernelInit&) -> Result<std::unique_ptr<CpuKernel>> {
    return std::unique_ptr<CpuKernel>(std::make_unique<CopyKernel>());
  };
  return def;
}

const KernelRegistrar kReshape{copy_kernel_def("Reshape")};
const KernelRegistrar kFlatten{copy_kernel_def("Flatten")};
const KernelRegistrar kSqueeze{copy_kernel_def("Squeeze")};
const KernelRegistrar kUnsqueeze{copy_kernel_def("Unsqueeze")};
const KernelRegistrar kIdentity{copy_kernel_def("Identity")};
const KernelRegistrar kDropout{copy_kernel_def("Dropout")};

}  // namespace
}  // namespace kiln::cpu
