// Softmax on float32 over an [outer, len, inner] view (see ops/softmax.h). Rows are normalized as
// max-subtract, exp, sum (in double, so long rows keep 1e-6 accuracy), scale.

// The vec_math selects only vectorize when GCC may assume float compares do not trap (results unchanged).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <algorithm>
#include <cmath>

#include <omp.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "backends/cpu/vec_math.h"
#include "ops/softmax.h"

namespace kiln::cpu {
namespace {

constexpr const char* kName = "cpu.f32.softmax";

class SoftmaxKernel final : public CpuKernel {
 public:
  explicit SoftmaxKernel(SoftmaxAttrs attrs) : attrs_(attrs) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    auto e = softmax_extent(attrs_, inputs[0].shape);
    if (!e.is_ok()) return e.status();
    ext_ = *e;
    // Strided rows (inner > 1) keep a running max and sum per inner position: one slice per thread.
    if (ext_.inner > 1) scratch_.assign(static_cast<size_t>(omp_get_max_threads() * ext_.inner * 2), 0.0);
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    const float* x = static_cast<const float*>(inputs[0]);
    float* y = static_cast<float*>(outputs[0]);
    const int64_t outer = ext_.outer, len = ext_.len, inner = ext_.inner;
    const bool parallel = outer * len * inner >= kParallelThreshold;
    if (inner == 1) {
#pragma omp parallel for if (parallel) schedule(static)
      for (int64_t o = 0; o < outer; ++o) contiguous_row(x + o * len, y + o * len, len);
      return Status::ok();
    }
    // A thread count raised since reshape() would overrun the per-thread scratch: stay serial then.
    const bool fits = static_cast<size_t>(omp_get_max_threads() * inner * 2) <= scratch_.size();
#pragma omp parallel for if (parallel && fits) schedule(static)
    for (int64_t o = 0; o < outer; ++o) {
      double* scratch = scratch_.data() + static_cast<size_t>(omp_get_thread_num() * inner * 2);
      strided_block(x + o * len * inner, y + o * len * inner, len, inner, scratch, scratch + inner);
    }
    return Status::ok();
  }

 private:
  static void contiguous_row(const float* x, float* y, int64_t len) {
    // simd reductions let the compiler reassociate max and sum across lanes.
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t l = 0; l < len; ++l) mx = std::max(mx, x[l]);
    for (int64_t l = 0; l < len; ++l) y[l] = fast_exp(x[l] - mx);
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t l = 0; l < len; ++l) sum += y[l];
    const float scale = static_cast<float>(1.0 / sum);
    for (int64_t l = 0; l < len; ++l) y[l] *= scale;
  }

  static void strided_block(const float* x, float* y, int64_t len, int64_t inner, double* mx, double* sum) {
    std::fill(mx, mx + inner, -INFINITY);
    std::fill(sum, sum + inner, 0.0);
    for (int64_t l = 0; l < len; ++l)
      for (int64_t i = 0; i < inner; ++i) mx[i] = std::max<double>(mx[i], x[l * inner + i]);
    for (int64_t l = 0; l < len; ++l)
      for (int64_t i = 0; i < inner; ++i) {
        const float e = fast_exp(x[l * inner + i] - static_cast<float>(mx[i]));
        y[l * inner + i] = e;
        sum[i] += e;
      }
    for (int64_t l = 0; l < len; ++l)
      for (int64_t i = 0; i < inner; ++i) y[l * inner + i] = static_cast<float>(y[l * inner + i] / sum[i]);
  }

  SoftmaxAttrs attrs_;
  SoftmaxExtent ext_;
  std::vector<double> scratch_;
};

CpuKernelDef softmax_kernel_def() {
  CpuKernelDef def;
  def.name = kName;
  def.op_type = "Softmax";
  def.supports = [](const Node& node, const Graph& graph) {
    return require_dtypes(node, graph, {DataType::kFloat32}, kName);
  };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    auto attrs = SoftmaxAttrs::parse(init.node);
    if (!attrs.is_ok()) return attrs.status();
    return std::unique_ptr<CpuKernel>(std::make_unique<SoftmaxKernel>(*attrs));
  };
  return def;
}

const KernelRegistrar kSoftmax{softmax_kernel_def()};

}  // namespace
}  // namespace kiln::cpu
