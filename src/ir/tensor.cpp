#include "ir/tensor.h"

#include <cmath>
#include <cstring>

namespace kiln {

double Tensor::get_double(int64_t i) const {
  switch (dtype) {
    case DataType::kFloat32: return data<float>()[i];
    case DataType::kFloat64: return data<double>()[i];
    case DataType::kInt64: return static_cast<double>(data<int64_t>()[i]);
    case DataType::kInt32: return data<int32_t>()[i];
    case DataType::kInt8: return data<int8_t>()[i];
    case DataType::kUInt8: return data<uint8_t>()[i];
    case DataType::kBool: return data<uint8_t>()[i] ? 1.0 : 0.0;
    case DataType::kFloat16: {
      // IEEE half -> double, used only for folding constants.
      uint16_t h = data<uint16_t>()[i];
      int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
      double v;
      if (exp == 0) v = mant * 0x1p-24;
      else if (exp == 31) v = mant ? NAN : INFINITY;
      else v = (1.0 + mant / 1024.0) * std::ldexp(1.0, exp - 15);
      return sign ? -v : v;
    }
    case DataType::kUndefined: return 0;
  }
  return 0;
}

int64_t Tensor::get_int64(int64_t i) const {
  switch (dtype) {
    case DataType::kInt64: return data<int64_t>()[i];
    case DataType::kInt32: return data<int32_t>()[i];
    default: return static_cast<int64_t>(get_double(i));
  }
}

}  // namespace kiln
