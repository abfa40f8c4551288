// Copy for the view ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) when the builder
// cannot alias output 0 to input 0: one cudaMemcpyAsync. Dropout's optional mask is filled with "true"
// (ones of the mask's dtype: bool from opset 10, the input's dtype before).
#include <cstring>

#include "backends/cuda/cuda_kernel.h"
#include "ops/reference_eval.h"

namespace kiln::cuda {
namespace {

template <class T>
__global__ void fill(T* out, int64_t n, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = value;
}

template <class T>
void launch_fill(void* out, int64_t n, uint64_t bits, cudaStream_t stream) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));  // the low bytes (little-endian)
  fill<T><<<grid_for(n, 256), 256, 0, stream>>>(static_cast<T*>(out), n, value);
}

class CopyKernel final : public CudaKernel {
 public:
  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    bytes_ = static_cast<size_t>(std::max<int64_t>(volume(outputs[0].shape), 0)) * dtype_size(outputs[0].dtype);
    mask_elements_ = 0;
    if (outputs.size() > 1 && outputs[1].dtype != DataType::kUndefined) {
      mask_elements_ = std::max<int64_t>(volume(outputs[1].shape), 0);
      const Tensor one = tensor_from_ref(RefTensor{outputs[1].dtype, {}, {1.0}}, outputs[1].dtype);
      mask_elem_ = one.nbytes();
      one_bits_ = 0;
      std::memcpy(&one_bits_, one.raw(), mask_elem_);
    }
    return Status::ok();
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) override {
    if (bytes_ > 0 && outputs[0] != inputs[0]) {
      Status s = check(cudaMemcpyAsync(outputs[0], inputs[0], bytes_, cudaMemcpyDeviceToDevice, stream),
                       cat("copying ", bytes_, " bytes"));
      if (!s.is_ok()) return s;
    }
    if (mask_elements_ > 0 && outputs[1]) {
      switch (mask_elem_) {
        case 1: launch_fill<uint8_t>(outputs[1], mask_elements_, one_bits_, stream); break;
        case 2: launch_fill<uint16_t>(outputs[1], mask_elements_, one_bits_, stream); break;
        case 4: launch_fill<uint32_t>(outputs[1], mask_elements_, one_bits_, stream); break;
        default: launch_fill<uint64_t>(outputs[1], mask_elements_, one_bits_, stream); break;
      }
      return check_launch("fill (Dropout mask)");
    }
    return Status::ok();
  }

 private:
  size_t bytes_ = 0;
  int64_t mask_elements_ = 0;
  size_t mask_elem_ = 0;   // bytes per mask element
  uint64_t one_bits_ = 0;  // the value 1 in the mask's dtype
};

KernelDef copy_kernel_def(const char* op_type) {
  KernelDef def;
  def.name = cat("cuda.any.copy.", op_type);
  def.op_type = op_type;
  def.supports = [name = def.name](const Node& node, const Graph& graph) {
    Status s = require_word_dtype(node, graph, name);
    if (!s.is_ok()) return s;
    if (node.outputs.size() > 1 && node.outputs[1] != kNoValue) {
      const DataType mask = graph.values[node.outputs[1]].dtype;
      const size_t e = dtype_size(mask);
      if (e != 1 && e != 2 && e != 4 && e != 8)
        return Status(StatusCode::kUnsupported,
                      cat("Dropout mask dtype ", dtype_name(mask), " is not supported by ", name));
    }
    return Status::ok();
  };
  def.create = [](const KernelInit&) -> Result<std::unique_ptr<CudaKernel>> {
    return std::unique_ptr<CudaKernel>(std::make_unique<CopyKernel>());
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
}  // namespace kiln::cuda
