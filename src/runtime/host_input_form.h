// How host IO may hand a float32 input to the layers reading it, instead of as float32: as float16 when every
// reader rounds it to float16 before any use (an FP16 engine's fused MLP or input Cast), or quantized when
// every reader is a QuantizeLinear with this constant scale and zero point (an INT8 engine's first layer).
// The host's conversion gives the bits the layer would have computed, so the result is the same, and a
// half or a quarter of the bytes cross PCIe (host_io.h).
#pragma once
#include <cstdint>

#include "kiln/types.h"

namespace kiln {

struct HostInputForm {
  DataType dtype = DataType::kUndefined;  // kFloat16, kInt8 or kUInt8; kUndefined: float32 only
  float scale = 1.f;                      // quantized forms: q = saturate(round_half_even(x / scale) + zero_point)
  int32_t zero_point = 0;
  explicit operator bool() const { return dtype != DataType::kUndefined; }
  bool operator==(const HostInputForm&) const = default;
};

}  // namespace kiln
