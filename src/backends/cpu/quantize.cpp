// QuantizeLinear (float32 -> int8/uint8) and DequantizeLinear (int8/uint8/int32 -> float32), per-tensor or
// per-axis. One flat loop each; the per-tensor quantize loop is compiled for AVX-512/AVX2 too and picked at
// load time, since the baseline build (SSE2) has no vector float rounding.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-math-errno", "no-trapping-math")
#endif
#include <algorithm>
#include <cmath>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "backends/layout_plan.h"
#include "ops/op_util.h"
#include "ops/quantize.h"

namespace kiln::cpu {
namespace {

// The per-element step, written so GCC vectorizes it: NaN -> 0 by a select, round, clamp in float, then
// int32 -> Q. Parameters come by value and pointers are __restrict: an int8 store may otherwise alias them.
template <class Q>
[[gnu::always_inline]] inline void quantize_range(const float* __restrict x, Q* __restrict y, int64_t begin,
                                                  int64_t end, float inv_scale, float zp, float lo, float hi) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    float v = x[i] * inv_scale;
    v = v == v ? v : 0.f;
    v = std::rint(v) + zp;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    y[i] = static_cast<Q>(static_cast<int32_t>(v));
  }
}

// Compiled for AVX-512, AVX2 and the baseline, picked at load time. Plain functions (clang cannot clone
// templates), and the OpenMP loop sits in the clone itself: GCC outlines a parallel region into a function
// of its own, which is cloned with its parent only when the region is written there.
constexpr int64_t kQuantizeChunk = 1 << 14;
#define KILN_DEFINE_QUANTIZE(Q)                                                                                \
  __attribute__((target_clones("avx512f", "avx2", "default"))) void quantize_per_tensor(                        \
      const float* x, Q* y, int64_t n, float inv_scale, float zp, float lo, float hi) {                         \
    /* Small tensors skip OpenMP entirely: even a serialized parallel region costs about a microsecond. */      \
    if (n < kParallelThreshold) return quantize_range(x, y, 0, n, inv_scale, zp, lo, hi);                       \
    _Pragma("omp parallel for schedule(static)") for (int64_t c = 0; c < n; c += kQuantizeChunk)                \
        quantize_range(x, y, c, std::min(n, c + kQuantizeChunk), inv_scale, zp, lo, hi);                       \
  }
KILN_DEFINE_QUANTIZE(int8_t)
KILN_DEFINE_QUANTIZE(uint8_t)
#undef KILN_DEFINE_QUANTIZE

class QuantizeKernel final : public CpuKernel {
 public:
  explicit QuantizeKernel(const Node& n) : node_(n) {}

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>& out) override {
    n_ = volume(in[0].shape);
    plan_ = make_quant_axis_plan(node_, in[0].shape, in[1].shape);
    has_zp_ = in.size() > 2 && in[2].dtype != DataType::kUndefined;
    int8_ = out[0].dtype == DataType::kInt8;
    return Status::ok();
  }

  Status run(const void* const* in, void* const* out) override {
    if (int8_) return run_as<int8_t>(in, out[0], -128.f, 127.f);
    return run_as<uint8_t>(in, out[0], 0.f, 255.f);
  }

 private:
  template <class Q>
  Status run_as(const void* const* in, void* out, float lo, float hi) {
    const float* x = static_cast<const float*>(in[0]);
    const float* scale = static_cast<const float*>(in[1]);
    const Q* zp = has_zp_ ? static_cast<const Q*>(in[2]) : nullptr;
    Q* y = static_cast<Q*>(out);
    if (plan_.channels == 1) {
      quantize_per_tensor(x, y, n_, 1.f / scale[0], zp ? float(zp[0]) : 0.f, lo, hi);
      return Status::ok();
    }
    for (int64_t i = 0; i < n_; ++i) {
      const int64_t c = plan_.channel(i);
      y[i] = static_cast<Q>(quantize_saturate(x[i] / scale[c] + (zp ? float(zp[c]) : 0.f), int32_t(lo), int32_t(hi)));
    }
    return Status::ok();
  }

  Node node_;
  int64_t n_ = 0;
  QuantAxisPlan plan_;
  bool has_zp_ = false, int8_ = true;
};

class DequantizeKernel final : public CpuKernel {
 public:
  explicit DequantizeKernel(const Node& n) : node_(n) {}

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>& out) override {
    n_ = volume(in[0].shape);
    plan_ = make_quant_axis_plan(node_, in[0].shape, in[1].shape);
    has_zp_ = in.size() > 2 && in[2].dtype != DataType::kUndefined;
    dtype_ = in[0].dtype;
    return Status::ok();
  }

  Status run(const void* const* in, void* const* out) override {
    switch (dtype_) {
      case DataType::kInt8: return run_as<int8_t>(in, out[0]);
      case DataType::kUInt8: return run_as<uint8_t>(in, out[0]);
      default: return run_as<int32_t>(in, out[0]);
    }
  }

 private:
  template <class Q>
  Status run_as(const void* const* in, void* out) {
    const Q* x = static_cast<const Q*>(in[0]);
    const float* scale = static_cast<const float*>(in[1]);
    const Q* zp = has_zp_ ? static_cast<const Q*>(in[2]) : nullptr;
    float* y = static_cast<float*>(out);
    const int64_t n = n_;
    if (plan_.channels == 1) {
      const float s = scale[0], z = zp ? float(zp[0]) : 0.f;
#pragma omp parallel for simd if (n >= kParallelThreshold) schedule(static)
      for (int64_t i = 0; i < n; ++i) y[i] = (float(x[i]) - z) * s;
      return Status::ok();
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = plan_.channel(i);
      y[i] = (float(x[i]) - (zp ? float(zp[c]) : 0.f)) * scale[c];
    }
    return Status::ok();
  }

  Node node_;
  int64_t n_ = 0;
  QuantAxisPlan plan_;
  bool has_zp_ = false;
  DataType dtype_ = DataType::kInt8;
};

CpuKernelDef quantize_def() {
  CpuKernelDef d;
  d.name = "cpu.f32.quantize_linear";
  d.op_type = "QuantizeLinear";
  d.supports = [name = d.name](const Node& n, const Graph& g) {
    return require_dtypes(n, g, {DataType::kFloat32}, name, /*all_inputs=*/false);
  };
  d.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    return std::unique_ptr<CpuKernel>(std::make_unique<QuantizeKernel>(init.node));
  };
  return d;
}

CpuKernelDef dequantize_def() {
  CpuKernelDef d;
  d.name = "cpu.f32.dequantize_linear";
  d.op_type = "DequantizeLinear";
  d.supports = [name = d.name](const Node& n, const Graph& g) -> Status {
    Status s = require_dtypes(n, g, {DataType::kInt8, DataType::kUInt8, DataType::kInt32}, name, false);
    if (!s.is_ok()) return s;
    if (g.values[n.inputs[1]].dtype != DataType::kFloat32)
      return Status(StatusCode::kUnsupported, name + " writes float32 (scale must be float32)");
    return Status::ok();
  };
  d.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    return std::unique_ptr<CpuKernel>(std::make_unique<DequantizeKernel>(init.node));
  };
  return d;
}

const KernelRegistrar kQuantize{quantize_def()};
const KernelRegistrar kDequantize{dequantize_def()};

}  // namespace
}  // namespace kiln::cpu
