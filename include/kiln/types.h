// Element types and shapes shared by the builder, the engine and the runtime.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// Values are ONNX TensorProto.DataType codes so import needs no table.
enum class DataType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
};

size_t dtype_size(DataType dt);            // bytes per element; 0 for kUndefined
std::string_view dtype_name(DataType dt);  // "float32", "int64", ...
bool dtype_from_onnx(int32_t onnx_code, DataType* out);

// A shape; -1 marks a dimension only known at run time.
using Dims = std::vector<int64_t>;
constexpr int64_t kDynamicDim = -1;

int64_t volume(const Dims& d);  // product of dims; -1 if any is dynamic
std::string dims_to_string(const Dims& d, std::string_view sep = "x");  // "8192x1x28x28", "-1x10"

}  // namespace kiln
