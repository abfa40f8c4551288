// kiln.FusedMLP on the GPU (issue 8): the device side (fused_mlp.cu) and what the host side
// (fused_mlp.cpp: supports/pack/tune/create, the per-layer cuBLASLt tactic) needs from it.
//
// Weights: the op's "nk" layout (float16 W_i [N_i, K_i] row-major is already the K-contiguous B operand
// the MMA wants; cuBLASLt's per-layer tactic and the small kernel read the op's own buffers), and for the
// large kernel a packed copy made at engine load (kFmlpPackLd below). Inside the kernels every layer is
// padded to Np_i = N_i rounded up to kFmlpPadN features (kFmlpPadNLarge in the large kernel; zero weights):
// padded features hold act(0), which only meets zero weight columns of the next layer; the last layer
// writes its first N features only.
// Limits (supports() refuses the rest): 1..4 layers, N_i <= 256, every K_i a multiple of 8 (16-byte rows
// for cp.async), float16 weights and biases, X and Y float32 or float16, X 16-byte aligned.
//
// Two kernels, one launch each for the whole chain:
//  - large M ("rows64"): a CTA owns 64 rows end to end: a producer warp streams K-chunks of 64 (the
//    chunk's packed W block in one bulk copy; layer 0's X by cp.async) through a 3-stage ring of full/empty
//    mbarriers, and 16 MMA warps (2 x 8) consume them, float32 X converted to float16 as the A fragments
//    are formed; later layers read their activations from shared memory and stream their weights through
//    the same ring (the next layer's first chunks are in flight during the epilogue).
//    mma.sync m16n8k16, float16 in, float32 accumulate; bias + activation in registers; hidden activations
//    stored float16 in shared memory; only Y is written to device memory.
//  - large M on Hopper ("wg64", fused_mlp_sm90a.cu, sm_90a only): the same row tiles on warpgroup MMA
//    (wgmma.m64nNk16, N = a layer's whole padded width), one consumer warpgroup + a producer (weight blocks
//    by bulk copy, X by the tensor copy engine from a tensor map encoded at each launch); hidden
//    activations stay in registers (a layer's accumulators are the next layer's A fragments). Its packed
//    weights (fmlp_wg_pack_weights): per layer, per K-chunk of 64, Np x 64 halves as wgmma's K-major
//    no-swizzle image: core matrices of 8 features x 8 k (128 contiguous bytes), [k-group][feature-group].
//  - small M ("cluster8"): a thread-block cluster of 8 CTAs owns 16 rows; each CTA computes 1/8 of every
//    layer's features (its weight slices, all layers, loaded once with cp.async at entry; K split over 4
//    warps) and writes its slice of the hidden activations into all 8 CTAs' shared memory (distributed
//    shared memory), one cluster barrier per layer. The weights are read by 8 SMs instead of 1.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kiln/status.h"
#include "ops/gemm.h"

namespace kiln::cuda {

constexpr int kFmlpMaxLayers = 4;
constexpr int kFmlpPadN = 64;    // N padded to a multiple of this (8 CTAs x 8 features in the small kernel)
constexpr int kFmlpMaxN = 256;   // padded features per layer (the large kernel's accumulators are registers)
constexpr int kFmlpRowsLarge = 64;
constexpr int kFmlpRowsSmall = 16;
constexpr int kFmlpCluster = 8;
// The large kernel's packed weights: per layer, per K-chunk of kFmlpChunkK, a block of Np rows x
// kFmlpPackLd halves (W[n][chunk columns], zero beyond N and K and in the 8 pad columns), which is the
// chunk's shared-memory image (padded rows: conflict-free ldmatrix), copied with one bulk copy.
constexpr int kFmlpChunkK = 64;
constexpr int kFmlpPadNLarge = 128;  // the large kernel's N padding (8 feature warps x 16)
constexpr int kFmlpPackLd = kFmlpChunkK + 8;
// A layer's padded features and K-chunks in the large kernel (the packing and the kernel share them).
constexpr int fmlp_large_padded_n(int n) { return (n + kFmlpPadNLarge - 1) / kFmlpPadNLarge * kFmlpPadNLarge; }
constexpr int fmlp_chunks(int k) { return (k + kFmlpChunkK - 1) / kFmlpChunkK; }

struct FmlpLayer {
  const void* w = nullptr;  // float16 [n, k]
  const void* b = nullptr;  // float16 [n]
  const void* wpack = nullptr;  // the large kernel's packed copy of w (fmlp_pack_weights)
  int k = 0;                // input features (multiple of 8; the previous layer's n)
  int n = 0;                // output features (<= kFmlpMaxN)
  Activation act = Activation::kNone;
  float alpha = 0.f;
};

struct FmlpParams {
  const void* x = nullptr;  // [m, layer[0].k], float32 or float16 (the launch's x_f32), 16-byte aligned
  void* y = nullptr;        // [m, last layer's n], float32 (y_f32) or float16
  bool y_f32 = true;
  int64_t m = 0;
  int layers = 0;
  FmlpLayer l[kFmlpMaxLayers];
  // Diagnostics only (CudaFusedMlp.Trace): where the cluster8 kernel spends its time. Null in every engine.
  unsigned long long* trace = nullptr;
};

// The cluster8 kernel's trace slots (FmlpParams::trace, kFmlpTraceSlots of them): %globaltimer at entry and
// exit of each CTA of the first cluster, and clock64 marks of the first CTA's thread 0 at each phase.
constexpr int kFmlpTraceSlots = 64;
constexpr int kFmlpTraceEntry = 0;   // + rank: globaltimer at entry (ns)
constexpr int kFmlpTraceExit = 8;    // + rank: globaltimer at exit (ns)
constexpr int kFmlpTraceMarks = 16;  // clock64 at: entry, weights issued, X staged, cluster up, then per layer
                                     // weights landed, MMA done (warp 0), partials stored, epilogue, cluster sync

// The wg64 kernel's padding of a layer's features: a wgmma width, the power of two >= max(n, 16).
constexpr int fmlp_wg_padded_n(int n) {
  int p = 16;
  while (p < n) p *= 2;
  return p;
}

// Halves of one layer's packed weights, and the packing (w: float16 bits [n, k] row-major).
size_t fmlp_packed_halves(int n, int k);
void fmlp_pack_weights(const uint16_t* w, int n, int k, uint16_t* out);
size_t fmlp_wg_packed_halves(int n, int k);
void fmlp_wg_pack_weights(const uint16_t* w, int n, int k, uint16_t* out);

// Dynamic shared memory the small kernel needs: it grows with the weights (0 = does not fit).
size_t fmlp_small_smem(const FmlpParams& p);
// Raises every fused kernel's shared-memory limit, wg64's included where the GPU runs it (once per process;
// call from create/tune, not while capturing).
Status fmlp_prepare();

Status launch_fmlp_large(const FmlpParams& p, bool x_f32, cudaStream_t stream);
Status launch_fmlp_small(const FmlpParams& p, bool x_f32, cudaStream_t stream);
// wg64: whether this GPU runs it (compute capability 9.0), its shared-memory limits (fmlp_prepare calls it),
// launch.
bool fmlp_wg_available();
Status fmlp_wg_prepare();
Status launch_fmlp_wg(const FmlpParams& p, bool x_f32, cudaStream_t stream);
// "[M x K0] -> N0 -> N1 ..." for error messages.
std::string fmlp_shape(const FmlpParams& p);
// float32 -> float16, n elements (the per-layer path's input conversion).
Status launch_fmlp_cast_f16(const float* x, void* y, int64_t n, cudaStream_t stream);

}  // namespace kiln::cuda
