// One float32 or int8 GEMM layer through oneDNN's matmul primitive: Y = act(alpha * op(A) * op(B) + beta * C),
// with bias, activation and (INT8) the per-channel rescale and requantization fused into the primitive.
// Used by the Gemm/FusedGemm/QGemm kernels (gemm_onednn.cpp) and by kiln.FusedMLP's large-batch path
// (fused_mlp.cpp), which runs its layers as a chain of these.
//   reshape:  creates the primitive for the concrete M with weights in the layout it prefers on this CPU
//             (`any`), reordered once and cached per layout; scratchpad preallocated.
//   run:      swaps the A/Y data handles and executes through the C API: no allocation.
// Inputs at run/reshape: A, B, C (C optional) as for Gemm; a constant B/C given here is read from the
// given tensors, which must outlive the kernel.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "backends/cpu/cpu_kernel.h"
#include "ops/gemm.h"

namespace kiln::cpu {

// What differs between the float and the INT8 GEMM: data types and the INT8 rescale.
struct MatmulTypes {
  using dt = dnnl::memory::data_type;
  dt a = dt::f32, b = dt::f32, y = dt::f32;
  std::vector<float> out_scales;  // per output column; empty = none (float GEMM)
  float y_inv_scale = 0;          // INT8 output: multiply by 1/y_scale before rounding; 0 = float output
};

// Float32 [rows, k] -> bf16 (round to nearest even) by oneDNN's reorder: the input of a BF16 matmul chain,
// whose float32 activations oneDNN's matmul does not take directly. reshape creates it for one shape; run
// converts without allocating. one_thread as for make_onednn_gemm.
class OnednnToBf16 {
 public:
  OnednnToBf16();
  ~OnednnToBf16();
  Status reshape(int64_t rows, int64_t k, bool one_thread);
  Status run(const float* x, void* y);  // y: rows x k bf16 values (2 bytes each)

 private:
  std::unique_ptr<dnnl::stream> stream_;
  std::unique_ptr<dnnl::reorder> prim_;
  std::unique_ptr<dnnl::memory> from_, to_;
  bool ready_ = false, serial_ = false;
};

// b_const / c_const: constant B and C (or null when they come at run time). owned_bias (INT8): bias in the
// int32 accumulator's units, replacing C. one_thread: planned for and run on the calling thread alone, whatever
// its size (a caller that runs several of these side by side from its own OpenMP team).
Result<std::unique_ptr<CpuKernel>> make_onednn_gemm(const std::string& layer, const GemmAttrs& attrs,
                                                    const Tensor* b_const, const Tensor* c_const,
                                                    MatmulTypes types = {}, std::vector<float> owned_bias = {},
                                                    bool one_thread = false);

}  // namespace kiln::cpu
