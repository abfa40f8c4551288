// Small kernels around the cuBLASLt GEMMs (gemm_elementwise.cu): what the library's epilogues cannot do.
// Launchers return the launch error with context; all run on the caller's stream, no allocation.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kiln/status.h"
#include "kiln/types.h"
#include "ops/gemm.h"
#if defined(__CUDACC__)
#include "ops/elementwise.h"
#endif

namespace kiln::cuda {

// D[i, j] = scale * C[i * c_row_stride + j * c_col_stride] for a row-major D of rows x cols, converting
// C's dtype to D's (float32/float16). Strides of 0 broadcast C ([N], [M,1], scalar). c == nullptr writes 0.
Status launch_broadcast_c(const void* c, DataType c_dtype, int64_t c_row_stride, int64_t c_col_stride, float scale,
                          void* d, DataType d_dtype, int64_t rows, int64_t cols, cudaStream_t stream);

// d[i] = act(d[i]) in place (float32/float16; computed in float).
Status launch_activation(void* d, DataType dtype, int64_t n, Activation act, float alpha, cudaStream_t stream);

// Deterministic pseudo-random values in +-[0.125, 1] (never zero) for timing buffers; int8/int32 get
// integers in +-[1, 127].
Status launch_fill_random(void* p, DataType dtype, int64_t n, uint64_t seed, cudaStream_t stream);

#if defined(__CUDACC__)
// act(x) in float: the one formula the CUDA GEMM epilogues use (apply_unary's, with CUDA's full-precision
// expf/tanhf, which match the float64 reference better than the intrinsics).
__device__ __forceinline__ float activate(Activation act, float x, float alpha) {
  switch (act) {
    case Activation::kRelu: return apply_unary<UnaryOp::kRelu>(x, alpha);
    case Activation::kLeakyRelu: return apply_unary<UnaryOp::kLeakyRelu>(x, alpha);
    case Activation::kSigmoid: return apply_unary<UnaryOp::kSigmoid>(x, alpha);
    case Activation::kTanh: return apply_unary<UnaryOp::kTanh>(x, alpha);
    default: return x;
  }
}
#endif

}  // namespace kiln::cuda
