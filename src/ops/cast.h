// Cast semantics shared by the reference and the CPU and CUDA kernels, so all round and wrap identically:
// float -> int truncates toward zero (NaN -> 0, saturating at the int64 range, then wrapping to the target
// width like an integer conversion); any -> bool is "!= 0" (NaN -> true); float16 rounds to nearest even.
// ONNX leaves out-of-range float -> int undefined; this choice never traps.
#pragma once
#include <cmath>
#include <cstdint>

#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/float16.h"
#include "ops/host_device.h"

namespace kiln {

// The `to` attribute as a Kiln dtype; error naming the ONNX code when Kiln has no such dtype.
Result<DataType> cast_target(const Node& node);

KILN_HOST_DEVICE inline int64_t float_to_int64(double x) {
  if (std::isnan(x)) return 0;
  const double t = std::trunc(x);
  if (t >= 0x1p63) return INT64_MAX;
  if (t < -0x1p63) return INT64_MIN;
  return static_cast<int64_t>(t);
}

// Integer conversion to the target width (modular, as C++20 defines it).
inline int64_t wrap_int(int64_t v, DataType to) {
  switch (to) {
    case DataType::kInt8: return static_cast<int8_t>(v);
    case DataType::kUInt8: return static_cast<uint8_t>(v);
    case DataType::kInt32: return static_cast<int32_t>(v);
    case DataType::kBool: return v != 0;
    default: return v;
  }
}

// Value x (of any source dtype, as a double) takes once cast to `to`, as a double.
inline double cast_double(double x, DataType to) {
  switch (to) {
    case DataType::kFloat64: return x;
    case DataType::kFloat32: return static_cast<float>(x);
    case DataType::kFloat16: return round_to_half(x);
    case DataType::kBool: return x != 0 ? 1.0 : 0.0;
    default: return static_cast<double>(wrap_int(float_to_int64(x), to));
  }
}

}  // namespace kiln
