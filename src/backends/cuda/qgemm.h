// kiln.QGemm on the GPU (formula in ops/quantize.h): the pieces both CUDA kernels share, defined in
// qgemm.cu. The cuBLASLt kernel (qgemm_cublaslt.cpp) computes the int32 accumulator with the library and
// finishes with launch_qgemm_epilogue; the tiled kernel (qgemm.cu) runs the whole layer itself, and is also
// the cuBLASLt kernel's fallback for pointers its IMMA algorithms cannot take.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kiln/status.h"
#include "ops/gemm.h"

namespace kiln::cuda {

constexpr const char* kQGemmTiledName = "cuda.int8.qgemm.tiled";

// y[m, n] = act(a_scale * w_scale[n] * acc[m, n] + bias[n]), then int8 saturate(round(y / y_scale)) when
// y_scale > 0, else float32.
struct QGemmEpilogue {
  float a_scale = 1;
  float y_scale = 0;
  const float* w_scale = nullptr;
  int64_t w_scale_stride = 1;    // 0: one scale for every column
  const float* bias = nullptr;   // null: none
  Activation activation = Activation::kNone;
  float activation_alpha = 0.01f;
};

// The epilogue over an int32 [m, n] accumulator into y (int8 or float32, as the epilogue says).
Status launch_qgemm_epilogue(const int32_t* acc, int64_t m, int64_t n, const QGemmEpilogue& e, void* y,
                             cudaStream_t stream);

// The whole QGemm: A int8 [m, k], W int8 [k, n] (trans_b = false) or [n, k] (trans_b = true), any alignment,
// int32 accumulation, then the epilogue.
Status launch_qgemm_tiled(const int8_t* a, const int8_t* w, bool trans_b, int64_t m, int64_t n, int64_t k,
                          const QGemmEpilogue& e, void* y, cudaStream_t stream);

}  // namespace kiln::cuda
