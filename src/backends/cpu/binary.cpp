// Add/Sub/Mul/Div for float32, int64 and int32 with numpy broadcasting. reshape() folds the broadcast into
// an [outer..., inner] plan (backends/layout_plan.h) whose inner loop has unit or zero strides, so the
// compiler vectorizes it.
#include <algorithm>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "backends/layout_plan.h"
#include "ops/elementwise.h"
#include "ops/op_util.h"

namespace kiln::cpu {
namespace {

template <BinaryOp Op, class T>
inline void inner_loop(const T* a, const T* b, T* y, int64_t n, int64_t sa, int64_t sb) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = apply_binary<Op>(a[i], b[i]);
  } else if (sa == 1) {
    const T bv = b[0];
    for (int64_t i = 0; i < n; ++i) y[i] = apply_binary<Op>(a[i], bv);
  } else if (sb == 1) {
    const T av = a[0];
    for (int64_t i = 0; i < n; ++i) y[i] = apply_binary<Op>(av, b[i]);
  } else {
    const T v = apply_binary<Op>(a[0], b[0]);
    for (int64_t i = 0; i < n; ++i) y[i] = v;
  }
}

template <BinaryOp Op, class T>
class BinaryKernel final : public CpuKernel {
 public:
  static constexpr int64_t kBlock = 16384;

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    plan_ = make_broadcast_plan(inputs[0].shape, inputs[1].shape, outputs[0].shape);
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    const T* a = static_cast<const T*>(inputs[0]);
    const T* b = static_cast<const T*>(inputs[1]);
    T* y = static_cast<T*>(outputs[0]);
    const BroadcastPlan& p = plan_;
    if (p.total <= 0) return Status::ok();
    const size_t rank = p.dims.size();
    const int64_t inner = p.dims.back();
    const int64_t outer = p.total / inner;
    const int64_t sa = p.sa.back(), sb = p.sb.back();
    // Work items are (outer index, block of the inner dim), so that one long row still spreads over threads.
    const int64_t blocks = (inner + kBlock - 1) / kBlock;
#pragma omp parallel for if (p.total >= kParallelThreshold) schedule(static)
    for (int64_t w = 0; w < outer * blocks; ++w) {
      const int64_t o = w / blocks, start = (w % blocks) * kBlock;
      int64_t oa = 0, ob = 0, rem = o;
      for (size_t d = rank - 1; d-- > 0;) {
        const int64_t idx = rem % p.dims[d];
        rem /= p.dims[d];
        oa += idx * p.sa[d];
        ob += idx * p.sb[d];
      }
      inner_loop<Op>(a + oa + start * sa, b + ob + start * sb, y + o * inner + start,
                     std::min(kBlock, inner - start), sa, sb);
    }
    return Status::ok();
  }

 private:
  BroadcastPlan plan_;
};

template <BinaryOp Op, class T>
CpuKernelDef binary_kernel_def(const char* stem, const char* op_type, DataType dtype) {
  CpuKernelDef def;
  def.name = kernel_name(stem, op_type);
  def.op_type = op_type;
  def.supports = [name = def.name, dtype](const Node& node, const Graph& graph) {
    return require_dtypes(node, graph, {dtype}, name);
  };
  def.create = [](const KernelInit&) -> Result<std::unique_ptr<CpuKernel>> {
    return std::unique_ptr<CpuKernel>(std::make_unique<BinaryKernel<Op, T>>());
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
  register_binary<float>("cpu.f32.binary", DataType::kFloat32);
  register_binary<int64_t>("cpu.i64.binary", DataType::kInt64);
  register_binary<int32_t>("cpu.i32.binary", DataType::kInt32);
  return true;
}();

}  // namespace
}  // namespace kiln::cpu
