#include "backends/cpu/fused_mlp_bf16.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace kiln::cpu {
namespace {

constexpr int64_t kPanel = 64;  // output columns per panel: 4 zmm accumulators per row (as the FP32 panels)

// float32 -> bf16, round to nearest even (NaN stays a quiet NaN): the rounding VCVTNEPS2BF16 does.
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

#define KILN_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// One panel of p <= 64 columns (C zmm, the last masked by `tail`) for R rows: acc = bias + sum over k pairs.
template <int R, int C>
KILN_BF16_TARGET void panel_bf16(const uint32_t* x, int64_t k2, const uint16_t* wp, int64_t p, __mmask16 tail,
                                 const float* bias, float* y, int64_t n) {
  __m512 acc[R * C], acc2[C];
  init_panel_accumulators<R, C>(acc, acc2, bias, tail);
  const int64_t row = p * 2;  // bf16 elements per k pair in this panel
  int64_t kp = 0;
  if constexpr (R == 1) {  // one row has only C dot-product chains: a second set over odd pairs keeps 2C in flight
    for (; kp + 2 <= k2; kp += 2) {
      const uint16_t* w0 = wp + kp * row;
      const uint16_t* w1 = w0 + row;
      const __m512i x0 = _mm512_set1_epi32(static_cast<int>(x[kp])), x1 = _mm512_set1_epi32(static_cast<int>(x[kp + 1]));
      for (int c = 0; c < C; ++c) {
        const __mmask16 m = c == C - 1 ? tail : __mmask16(0xFFFF);
        acc[c] = _mm512_dpbf16_ps(acc[c], (__m512bh)x0, (__m512bh)_mm512_maskz_loadu_epi32(m, w0 + 32 * c));
        acc2[c] = _mm512_dpbf16_ps(acc2[c], (__m512bh)x1, (__m512bh)_mm512_maskz_loadu_epi32(m, w1 + 32 * c));
      }
    }
  }
  for (; kp < k2; ++kp) {
    const uint16_t* w = wp + kp * row;
    __m512i wv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) wv[c] = _mm512_maskz_loadu_epi32(c == C - 1 ? tail : __mmask16(0xFFFF), w + 32 * c);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512i xb = _mm512_set1_epi32(static_cast<int>(x[r * k2 + kp]));
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r * C + c] = _mm512_dpbf16_ps(acc[r * C + c], (__m512bh)xb, (__m512bh)wv[c]);
    }
  }
  store_panel_accumulators<R, C>(acc, acc2, tail, y, n);
}

template <int R>
KILN_BF16_TARGET void dense_rows(const uint32_t* x, int64_t k, const uint16_t* w, const float* bias, int64_t n,
                                 float* y) {
  const int64_t k2 = (k + 1) / 2;
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    const __mmask16 tail = p % 16 ? __mmask16((1u << (p % 16)) - 1) : __mmask16(0xFFFF);
    const uint16_t* wp = w + p0 * k2 * 2;
    switch ((p + 15) / 16) {
      case 1: panel_bf16<R, 1>(x, k2, wp, p, tail, bias + p0, y + p0, n); break;
      case 2: panel_bf16<R, 2>(x, k2, wp, p, tail, bias + p0, y + p0, n); break;
      case 3: panel_bf16<R, 3>(x, k2, wp, p, tail, bias + p0, y + p0, n); break;
      default: panel_bf16<R, 4>(x, k2, wp, p, tail, bias + p0, y + p0, n); break;
    }
  }
}

}  // namespace

bool cpu_has_avx512_bf16() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
  return has;
}

CacheLineVector<uint16_t> to_bf16_pair_panels(const float* nk, int64_t n, int64_t k) {
  const int64_t k2 = (k + 1) / 2;
  CacheLineVector<uint16_t> out(static_cast<size_t>(k2 * 2 * n), 0);
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    uint16_t* panel = out.data() + p0 * k2 * 2;
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < p; ++j) panel[(kk / 2) * p * 2 + j * 2 + kk % 2] = to_bf16(nk[(p0 + j) * k + kk]);
  }
  return out;
}

KILN_BF16_TARGET void to_bf16_pairs(const float* x, int64_t rows, int64_t k, uint32_t* pairs) {
  const int64_t k2 = (k + 1) / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    uint16_t* out = reinterpret_cast<uint16_t*>(pairs + r * k2);
    for (int64_t k0 = 0; k0 < 2 * k2; k0 += 16) {  // the odd k's pair partner reads as 0
      const int64_t in = std::clamp<int64_t>(k - k0, 0, 16), slots = std::min<int64_t>(2 * k2 - k0, 16);
      const __m512 v = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << in) - 1), xr + k0);
      _mm256_mask_storeu_epi16(out + k0, static_cast<__mmask16>((1u << slots) - 1), (__m256i)_mm512_cvtneps_pbh(v));
    }
  }
}

namespace {

// lo of the split: v - hi, or 0 where that is not a number (v infinite or NaN: hi carries it).
float split_lo(float v, uint16_t hi) {
  const float lo = v - from_bf16(hi);
  return lo == lo ? lo : 0.f;
}

// v rounded to bf16 (to nearest even) and kept as float32, by integer adds: VCVTNEPS2BF16's value for every v but
// NaN (whose lo is 0 anyway). maskz forms: GCC 12 warns about the unmasked ones' _mm512_undefined_epi32.
KILN_BF16_TARGET inline __m512 round_to_bf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_maskz_srli_epi32(0xFFFF, u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), odd);
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// v - hi, 0 where that is not a number.
KILN_BF16_TARGET inline __m512 split_lo(__m512 v, __m512 hi) {
  const __m512 d = _mm512_sub_ps(v, hi);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, d, _CMP_ORD_Q), d);
}

KILN_BF16_TARGET void to_bf16x3_rows_avx512(const float* x, int64_t rows, int64_t k, uint16_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * k;
    uint16_t* o = out + r * 3 * k;
    int64_t j = 0;
    for (; j + 32 <= k; j += 32) {  // two vectors per step: one 64-byte store per third
      const __m512 v0 = _mm512_loadu_ps(xr + j), v1 = _mm512_loadu_ps(xr + j + 16);
      const __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(v1, v0);
      const __m512 lo0 = split_lo(v0, round_to_bf16(v0)), lo1 = split_lo(v1, round_to_bf16(v1));
      _mm512_storeu_si512(o + j, hi);
      _mm512_storeu_si512(o + k + j, (__m512i)_mm512_cvtne2ps_pbh(lo1, lo0));
      _mm512_storeu_si512(o + 2 * k + j, hi);
    }
    for (; j < k; j += 16) {
      const __mmask16 m = k - j >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - j)) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(m, xr + j);
      const __m256i hi = (__m256i)_mm512_cvtneps_pbh(v);
      const __m256i lo = (__m256i)_mm512_cvtneps_pbh(split_lo(v, round_to_bf16(v)));
      _mm256_mask_storeu_epi16(o + j, m, hi);
      _mm256_mask_storeu_epi16(o + k + j, m, lo);
      _mm256_mask_storeu_epi16(o + 2 * k + j, m, hi);
    }
  }
}

}  // namespace

void to_bf16x3_rows(const float* x, int64_t rows, int64_t k, uint16_t* out) {
  if (cpu_has_avx512_bf16()) return to_bf16x3_rows_avx512(x, rows, k, out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) {
      const float v = x[r * k + j];
      const uint16_t hi = to_bf16(v);
      uint16_t* o = out + r * 3 * k + j;
      o[0] = o[2 * k] = hi;
      o[k] = to_bf16(split_lo(v, hi));
    }
}

std::vector<float> to_bf16x3_weights(const float* nk, int64_t n, int64_t k) {
  std::vector<float> out(static_cast<size_t>(n * 3 * k));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const float v = nk[i * k + j];
      const uint16_t hi = to_bf16(v);
      float* o = out.data() + i * 3 * k + j;
      o[0] = o[k] = from_bf16(hi);
      o[2 * k] = from_bf16(to_bf16(split_lo(v, hi)));
    }
  return out;
}

KILN_BF16_TARGET void dense_bf16(const uint32_t* x, int64_t rows, int64_t k, const uint16_t* w, const float* bias,
                                 int64_t n, float* y) {
  switch (rows) {
    case 4: dense_rows<4>(x, k, w, bias, n, y); break;
    case 3: dense_rows<3>(x, k, w, bias, n, y); break;
    case 2: dense_rows<2>(x, k, w, bias, n, y); break;
    default: dense_rows<1>(x, k, w, bias, n, y); break;
  }
}

}  // namespace kiln::cpu
