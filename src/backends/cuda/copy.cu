// Copy for the view ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) when the builder
// cannot alias output 0 to input 0: one cudaMemcpyAsync. Dropout's optional mask is filled with ones.
#include "backends/cuda/cuda_kernel.h"

namespace kiln::cuda {
namespace {

template <class T>
__global__ void fill_ones(T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = T(1);
}

class CopyKernel final : public CudaKernel {
 public:
  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    bytes_ = static_cast<size_t>(std::max<int64_t>(volume(outputs[0].shape), 0)) * dtype_size(outputs[0].dtype);
    mask_elements_ = 0;
    if (outputs.size() > 1 && outputs[1].dtype != DataType::kUndefined) {
      mask_elements_ = std::max<int64_t>(volume(outputs[1].shape), 0);
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
      const unsigned grid = grid_for(mask_elements_, 256);
      fill_ones<uint8_t><<<grid, 256, 0, stream>>>(static_cast<uint8_t*>(outputs[1]), mask_elements_);  // bool
      return check_launch("fill_ones");
    }
    return Status::ok();
  }

 private:
  size_t bytes_ = 0;
  int64_t mask_elements_ = 0;
};

KernelDef copy_kernel_def(const char* op_type) {
  KernelDef def;
  def.name = cat("cuda.any.copy.", op_type);
  def.op_type = op_type;
  def.supports = [name = def.name](const Node& node, const Graph& graph) {
    const DataType dt = graph.values[node.inputs[0]].dtype;
    if (dtype_size(dt) == 0)
      return Status(StatusCode::kUnsupported, cat("dtype ", dtype_name(dt), " is not supported by ", name));
    if (node.outputs.size() > 1 && node.outputs[1] != kNoValue) {
      const DataType mask = graph.values[node.outputs[1]].dtype;
      if (mask != DataType::kBool)
        return Status(StatusCode::kUnsupported, cat("Dropout mask dtype ", dtype_name(mask), " is not supported"));
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
