// Iteration plans shared by the CPU and CUDA kernels: a broadcast (binary elementwise ops), a permutation
// (Transpose) reduced to the fewest dims, by dropping unit dims and merging dims that stay contiguous (or
// stay broadcast) on every side, and the quantization axis of QuantizeLinear/DequantizeLinear. Header-only and free of fmt, so .cu files can include it.
#pragma once
#include <cstdint>

#include "kiln/types.h"
#include "ops/host_device.h"
#include "ops/op_util.h"
#include "ops/quantize.h"

namespace kiln {

// Output dims of a broadcast binary op after merging; the last dim is the innermost. Each operand's
// element strides per dim are 0 where it is broadcast. The innermost stride is always 0 or 1.
struct BroadcastPlan {
  Dims dims;
  Dims sa, sb;
  int64_t total = 0;  // output elements
};

inline BroadcastPlan make_broadcast_plan(const Dims& a, const Dims& b, const Dims& out) {
  const Dims fa = broadcast_strides(a, out), fb = broadcast_strides(b, out);
  BroadcastPlan p;
  p.total = volume(out);
  for (size_t d = 0; d < out.size(); ++d) {
    if (out[d] == 1) continue;
    if (!p.dims.empty()) {
      const int64_t n = out[d];
      auto mergeable = [&](int64_t prev, int64_t cur) { return (prev == 0 && cur == 0) || prev == cur * n; };
      if (mergeable(p.sa.back(), fa[d]) && mergeable(p.sb.back(), fb[d])) {
        p.dims.back() *= n;
        p.sa.back() = fa[d];
        p.sb.back() = fb[d];
        continue;
      }
    }
    p.dims.push_back(out[d]);
    p.sa.push_back(fa[d]);
    p.sb.push_back(fb[d]);
  }
  if (p.dims.empty()) {  // all ones: a single element
    p.dims = {1};
    p.sa = {0};
    p.sb = {0};
  }
  return p;
}

// A transpose as a walk over the output: output dims after merging, with the input element stride of
// each. A walk of one dim is a plain copy (is_copy); otherwise there are at least 2 dims.
struct TransposePlan {
  Dims dims;
  Dims in_strides;
  int64_t total = 0;  // elements
  bool is_copy = false;
};

// perm must be a valid permutation of in's dims (see resolve_perm in ops/transpose.h).
inline TransposePlan make_transpose_plan(const Dims& in, const std::vector<int64_t>& perm) {
  const Dims strides = contiguous_strides(in);
  TransposePlan p;
  p.total = volume(in);
  for (size_t i = 0; i < perm.size(); ++i) {
    const int64_t n = in[perm[i]], st = strides[perm[i]];
    if (n == 1) continue;
    if (!p.dims.empty() && p.in_strides.back() == st * n) {
      p.dims.back() *= n;
      p.in_strides.back() = st;
      continue;
    }
    p.dims.push_back(n);
    p.in_strides.push_back(st);
  }
  p.is_copy = p.dims.size() <= 1;
  return p;
}

// The quantization axis of a QuantizeLinear/DequantizeLinear node for concrete shapes (per-tensor when the
// scale has one element). The axis attribute was validated by shape inference.
inline QuantAxisPlan make_quant_axis_plan(const Node& node, const Dims& x, const Dims& scale) {
  if (volume(scale) <= 1) return {};
  auto attr = node.attrs.get_int("axis", 1);
  auto axis = normalize_axis(attr.is_ok() ? *attr : 1, static_cast<int64_t>(x.size()));
  return axis.is_ok() ? quant_axis_plan(x, *axis) : QuantAxisPlan{};
}

}  // namespace kiln
