// Relu, LeakyRelu, Sigmoid, Tanh on float32 and float16: one flat grid-stride loop per op. The formulas
// are apply_unary's (ops/elementwise.h) with CUDA's full-precision expf/tanhf; float16 computes in float.
#include <cuda_fp16.h>

#include <type_traits>

#include "backends/cuda/cuda_kernel.h"
#include "ops/elementwise.h"

namespace kiln::cuda {
namespace {

constexpr int kBlock = 256;

template <UnaryOp Op, class T>
__global__ void unary_kernel(const T* x, T* y, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<T, __half>)
      y[i] = __float2half_rn(apply_unary<Op>(__half2float(x[i]), alpha));
    else
      y[i] = apply_unary<Op>(x[i], alpha);
  }
}

template <UnaryOp Op, class T>
class UnaryKernel final : public CudaKernel {
 public:
  UnaryKernel(std::string name, float alpha) : name_(std::move(name)), alpha_(alpha) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    n_ = volume(outputs[0].shape);
    return Status::ok();
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) override {
    if (n_ <= 0) return Status::ok();
    unary_kernel<Op><<<grid_for(n_, kBlock), kBlock, 0, stream>>>(static_cast<const T*>(inputs[0]),
                                                                  static_cast<T*>(outputs[0]), n_, alpha_);
    return check_launch(name_);
  }

 private:
  std::string name_;
  float alpha_;
  int64_t n_ = 0;
};

template <UnaryOp Op, class T>
KernelDef unary_kernel_def(const char* stem, const char* op_type, DataType dtype) {
  KernelDef def;
  def.name = cat(stem, ".", op_type);
  def.op_type = op_type;
  def.supports = [name = def.name, dtype](const Node& node, const Graph& graph) {
    return require_dtypes(node, graph, {dtype}, name);
  };
  def.create = [name = def.name](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    auto alpha = unary_alpha(init.node);
    if (!alpha.is_ok()) return alpha.status();
    return std::unique_ptr<CudaKernel>(std::make_unique<UnaryKernel<Op, T>>(name, *alpha));
  };
  return def;
}

template <class T>
void register_unary(const char* stem, DataType dtype) {
  static const KernelRegistrar relu{unary_kernel_def<UnaryOp::kRelu, T>(stem, "Relu", dtype)};
  static const KernelRegistrar leaky{unary_kernel_def<UnaryOp::kLeakyRelu, T>(stem, "LeakyRelu", dtype)};
  static const KernelRegistrar sigmoid{unary_kernel_def<UnaryOp::kSigmoid, T>(stem, "Sigmoid", dtype)};
  static const KernelRegistrar tanh{unary_kernel_def<UnaryOp::kTanh, T>(stem, "Tanh", dtype)};
}

const bool kRegistered = [] {
  register_unary<float>("cuda.f32.unary", DataType::kFloat32);
  register_unary<__half>("cuda.f16.unary", DataType::kFloat16);
  return true;
}();

}  // namespace
}  // namespace kiln::cuda
