// The direct tactic of kiln.FusedMLP in BF16 (fused_mlp.cpp), for small M on CPUs with AVX512_BF16: weights in
// "bf16 pair panels", rows through every layer in blocks of up to 4, one VDPBF16PS per 16 columns and two k.
// At batch 1 the time is streaming the weights once from L2, half the bytes of the FP32 panels.
//   Pair panels: per block of 64 output columns (P = min(64, N - p0)), [ceil(K/2)][P][2] bf16 at offset
//   p0 * ceil(K/2) * 2: element (kp, j) holds W[p0 + j][2kp] and W[p0 + j][2kp + 1] (0 past K), so one 64-byte
//   load is 16 columns' weights for two k, the layout VDPBF16PS multiplies against a broadcast pair of inputs.
//   Activations: each row as ceil(K/2) pairs (two bf16 in one 32-bit word, the odd K padded with 0).
// Rounding as oneDNN's BF16 chain: float32 -> bf16 to nearest even, float32 accumulation starting at the bias,
// hidden activations rounded to bf16 after the activation, float32 output.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "backends/cpu/cpu_util.h"

namespace kiln::cpu {

// A panel's accumulators for R rows and C zmm columns (the last masked by `tail`), shared by the FP32 and
// BF16 direct kernels: acc[r * C + c] starts at the bias; acc2[c], a second set one row keeps over odd k, at 0.
// Flat arrays, and acc2 only read when R == 1: GCC 12 kept [R][C] arrays of __m512, or an acc2 of R * C, on
// the stack and stored them every k step (two rows then ran at half the per-row speed of one).
template <int R, int C>
__attribute__((target("avx512f"))) inline void init_panel_accumulators(__m512 (&acc)[R * C], __m512 (&acc2)[C],
                                                                       const float* bias, __mmask16 tail) {
#pragma GCC unroll 4
  for (int c = 0; c < C; ++c) {
    const __m512 b = _mm512_maskz_loadu_ps(c == C - 1 ? tail : __mmask16(0xFFFF), bias + 16 * c);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[r * C + c] = b;
    acc2[c] = _mm512_setzero_ps();
  }
}

// y[r][16c ...] = acc (+ acc2 for one row), the last column masked by `tail`; n: y's row stride.
template <int R, int C>
__attribute__((target("avx512f"))) inline void store_panel_accumulators(const __m512 (&acc)[R * C],
                                                                        const __m512 (&acc2)[C], __mmask16 tail,
                                                                        float* y, int64_t n) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      __m512 v = acc[r * C + c];
      if constexpr (R == 1) v = _mm512_add_ps(v, acc2[c]);
      _mm512_mask_storeu_ps(y + r * n + 16 * c, c == C - 1 ? tail : __mmask16(0xFFFF), v);
    }
}

bool cpu_has_avx512_bf16();

// [N, K] float32 -> pair panels (same N, K; ceil(K/2) * 2 * N elements).
CacheLineVector<uint16_t> to_bf16_pair_panels(const float* nk, int64_t n, int64_t k);

// rows x k floats -> rows x ceil(k/2) pairs (round to nearest even).
void to_bf16_pairs(const float* x, int64_t rows, int64_t k, uint32_t* pairs);

// Split BF16 ("bf16x3", the TF32-precision chain on AMX, fused_mlp.cpp): a float32 v as hi = bf16(v) and
// lo = bf16(v - hi), so v = hi + lo within 2^-16 relative; x . w ~ xhi.whi + xlo.whi + xhi.wlo (the lo.lo term is
// below that), one bf16 matmul over K' = 3K with float32 accumulation:
//   rows: each row of x -> [hi | lo | hi] (3k bf16 values; out's row stride 3k). Not-a-number and infinite
//         values keep them in hi with lo = 0.
//   weights: [N, K] -> [N, 3K] float32 holding [hi | hi | lo] per row (exact bf16 values, so the matmul's
//         own float32 -> bf16 weight reorder keeps them).
void to_bf16x3_rows(const float* x, int64_t rows, int64_t k, uint16_t* out);
std::vector<float> to_bf16x3_weights(const float* nk, int64_t n, int64_t k);

// y[rows, n] = bias + x W^T for up to 4 rows (pre-activation, float32); x as pairs, w as pair panels.
void dense_bf16(const uint32_t* x, int64_t rows, int64_t k, const uint16_t* w, const float* bias, int64_t n, float* y);

}  // namespace kiln::cpu
