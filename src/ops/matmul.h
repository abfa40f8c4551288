// MatMul shape rules (numpy matmul): batch dims broadcast, a 1-D A is a row vector and a 1-D B a column
// vector whose unit dim is dropped from the output. Shared by the op definition and the CPU kernels.
#pragma once
#include <cstdint>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

struct MatMulShape {
  int64_t m = 0, k = 0, n = 0;
  Dims batch;            // broadcast batch dims of the output
  Dims a_batch, b_batch;  // each input's batch dims, left-padded with 1s to batch.size()
  Dims out;              // output shape (1-D unit dims already dropped)
};

Result<MatMulShape> matmul_shape(const Dims& a, const Dims& b);

}  // namespace kiln
