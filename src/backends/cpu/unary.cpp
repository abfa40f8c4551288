// Relu, LeakyRelu, Sigmoid, Tanh on float32: one flat loop per op. Sigmoid and Tanh use the vectorizable
// approximations of vec_math.h rather than libm's scalar calls.

// The vec_math selects only vectorize when GCC may assume float compares do not trap (results unchanged).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "backends/cpu/vec_math.h"
#include "ops/elementwise.h"

namespace kiln::cpu {
namespace {

template <UnaryOp Op>
inline float unary_f32(float x, float alpha) {
  if constexpr (Op == UnaryOp::kSigmoid) return fast_sigmoid(x);
  else if constexpr (Op == UnaryOp::kTanh) return fast_tanh(x);
  else return apply_unary<Op>(x, alpha);
}

template <UnaryOp Op>
class UnaryKernel final : public CpuKernel {
 public:
  explicit UnaryKernel(float alpha) : alpha_(alpha) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    n_ = volume(outputs[0].shape);
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    const float* x = static_cast<const float*>(inputs[0]);
    float* y = static_cast<float*>(outputs[0]);
    const float alpha = alpha_;
    const int64_t n = n_;
#pragma omp parallel for simd if (n >= kParallelThreshold) schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = unary_f32<Op>(x[i], alpha);
    return Status::ok();
  }

 private:
  float alpha_;
  int64_t n_ = 0;
};

template <UnaryOp Op>
CpuKernelDef unary_kernel_def(const char* op_type) {
  CpuKernelDef def;
  def.name = kernel_name("cpu.f32.unary", op_type);
  def.op_type = op_type;
  def.supports = [name = def.name](const Node& node, const Graph& graph) {
    return require_dtypes(node, graph, {DataType::kFloat32}, name);
  };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    auto alpha = unary_alpha(init.node);
    if (!alpha.is_ok()) return alpha.status();
    return std::unique_ptr<CpuKernel>(std::make_unique<UnaryKernel<Op>>(*alpha));
  };
  return def;
}

const KernelRegistrar kRelu{unary_kernel_def<UnaryOp::kRelu>("Relu")};
const KernelRegistrar kLeakyRelu{unary_kernel_def<UnaryOp::kLeakyRelu>("LeakyRelu")};
const KernelRegistrar kSigmoid{unary_kernel_def<UnaryOp::kSigmoid>("Sigmoid")};
const KernelRegistrar kTanh{unary_kernel_def<UnaryOp::kTanh>("Tanh")};

}  // namespace
}  // namespace kiln::cpu
