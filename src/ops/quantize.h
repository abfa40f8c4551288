// QuantizeLinear / DequantizeLinear (ONNX) and kiln.QGemm, the INT8 GEMM the INT8 builder produces.
// Symmetric INT8 as TensorRT uses it: real = scale * q, q = saturate(round_half_even(real / scale)).
// The formulas are KILN_HOST_DEVICE so the references, the CPU kernels and the CUDA kernels share them.
#pragma once
#include <cmath>
#include <cstdint>

#include <optional>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/gemm.h"
#include "ops/host_device.h"

namespace kiln {

// round(x) with ties to even, then saturated to [lo, hi]; NaN gives 0 (as ONNX Runtime does).
KILN_HOST_DEVICE inline int32_t quantize_saturate(float x, int32_t lo, int32_t hi) {
  if (!(x == x)) return 0;
  const float r = rintf(x);  // current rounding mode: to nearest even
  return r <= static_cast<float>(lo) ? lo : r >= static_cast<float>(hi) ? hi : static_cast<int32_t>(r);
}

// QuantizeLinear/DequantizeLinear: element i uses scale and zero point (i / inner) % channels; per-tensor is
// channels = 1. Built from the axis shape inference validated (-1 = per-tensor).
struct QuantAxisPlan {
  int64_t channels = 1, inner = 1;
  KILN_HOST_DEVICE int64_t channel(int64_t i) const { return channels == 1 ? 0 : (i / inner) % channels; }
};

inline QuantAxisPlan quant_axis_plan(const Dims& x, int64_t axis) {
  QuantAxisPlan p;
  if (axis < 0) return p;
  p.channels = x[axis];
  for (size_t d = axis + 1; d < x.size(); ++d) p.inner *= x[d];
  return p;
}

// kiln.QGemm: Y = act(a_scale * w_scale[n] * sum_k A[m,k] * W[k,n] + bias[n]), A and W int8 with int32
// accumulation. Inputs: A int8 [..., K]; W int8 constant, [K,N] (transB=0) or [N,K] (transB=1);
// bias float32 [N] (optional); w_scale float32 [N] or [1]. With y_scale > 0 the output is int8,
// saturate(round(Y / y_scale)); with y_scale = 0 it is float32.
struct QGemmAttrs {
  float a_scale = 0;
  float y_scale = 0;  // 0: float32 output
  bool trans_b = false;
  Activation activation = Activation::kNone;
  float activation_alpha = 0.01f;

  bool int8_output() const { return y_scale > 0; }
  static Result<QGemmAttrs> parse(const Node& node);
};

// A Quantize/DequantizeLinear's scale when it is one constant float32 (per tensor); nullopt otherwise.
std::optional<float> constant_per_tensor_scale(const Node& node, const Graph& g);

// The scale of an INT8 value, read from its producer (QuantizeLinear's per-tensor scale or QGemm's
// y_scale); nullopt for other values. Tools use it to show and dequantize INT8 activations.
std::optional<float> int8_value_scale(const Graph& g, int value);

}  // namespace kiln
