// Reader for NumPy .npy files (format versions 1, 2 and 3), converting the data to float32: the form
// calibration and test inputs take. Little-endian numeric dtypes in C order only; Fortran order and
// big-endian data are refused with a clear error rather than silently transposed or byte-swapped.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln::data {

struct NpyArray {
  std::vector<int64_t> dims;  // () for a scalar
  std::vector<float> data;    // row-major, product(dims) values
  std::string dtype;          // as the header gives it, e.g. "<f4", "|u1"
};

// Supported dtypes: <f4 <f8 <f2 |u1 |i1 |b1 <i2 <u2 <i4 <u4 <i8 <u8. Every failure names the file and
// what is wrong: missing file, bad magic, truncated or malformed header, unsupported dtype or order,
// truncated data, trailing bytes.
Result<NpyArray> read_npy(const std::string& path);
// The same on bytes already in memory; `name` is what errors call them.
Result<NpyArray> parse_npy(std::string_view bytes, const std::string& name);

}  // namespace kiln::data
