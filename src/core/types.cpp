#include "kiln/types.h"

namespace kiln {

size_t dtype_size(DataType dt) {
  switch (dt) {
    case DataType::kFloat32: return 4;
    case DataType::kUInt8: return 1;
    case DataType::kInt8: return 1;
    case DataType::kInt32: return 4;
    case DataType::kInt64: return 8;
    case DataType::kBool: return 1;
    case DataType::kFloat16: return 2;
    case DataType::kFloat64: return 8;
    case DataType::kUndefined: return 0;
  }
  return 0;
}

std::string_view dtype_name(DataType dt) {
  switch (dt) {
    case DataType::kFloat32: return "float32";
    case DataType::kUInt8: return "uint8";
    case DataType::kInt8: return "int8";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kBool: return "bool";
    case DataType::kFloat16: return "float16";
    case DataType::kFloat64: return "float64";
    case DataType::kUndefined: return "undefined";
  }
  return "undefined";
}

bool dtype_from_onnx(int32_t onnx_code, DataType* out) {
  switch (onnx_code) {
    case 1: case 2: case 3: case 6: case 7: case 9: case 10: case 11:
      *out = static_cast<DataType>(onnx_code);
      return true;
    default:
      return false;
  }
}

int64_t volume(const Dims& d) {
  int64_t v = 1;
  for (int64_t x : d) {
    if (x < 0) return -1;
    v *= x;
  }
  return v;
}

std::string dims_to_string(const Dims& d, std::string_view sep) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i) s += sep;
    s += std::to_string(d[i]);
  }
  return s;
}

}  // namespace kiln
