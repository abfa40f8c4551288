// kiln.FusedMLP on float32 (ops/fused_mlp.h), three tactics behind one kernel:
//   direct:  for M = 1. The row goes through every layer, the intermediate in a small per-context buffer.
//            The time is streaming each weight once from L2, so the weights are packed at build time into
//            "cpu.panel64": per block of 64 output columns, [K][64] contiguous (one sequential stream per
//            panel; each k step is 4 zmm loads that feed 4 FMA chains, doubled over even/odd k for latency).
//   blocked: for M >= 2 when forced (KILN_FUSED_MLP_TACTIC=blocked; not yet faster than onednn). The rows are split evenly over the OpenMP threads; each thread runs the whole
//            network on its rows, a block of up to kBlockRows rows at a time (X block -> layer 1 -> h1 ->
//            layer 2 -> h2 -> ... -> Y), h1/h2 in per-thread scratch sized at reshape (L1/L2-resident).
//            Inside a layer, tiles of 6 rows x 64 columns (24 zmm accumulators) walk K over the same
//            cpu.panel64 panels: the 6-row A tile stays in L1 across the panels, each weight load (streamed
//            from L2) feeds 6 FMAs; bias starts the accumulators and ReLU is applied in the store. The weights (0.94 MB for the
//            course MLP) stay in each core's L2 across blocks. Every output element is bias + the k-ordered
//            FMA chain whatever the tile, block or thread it falls in, so results do not depend on M's split
//            or the thread count.
//   onednn:  the layers as a chain of oneDNN matmuls (onednn_gemm.h, the per-layer path Gemm uses), weights
//            unpacked to [N,K] at load time for it. The rule's choice for M >= 2 (measured faster than blocked).
// Both hand-written tactics have AVX-512 code picked at run time and a portable loop over the same layout
// for CPUs without it (the engine file is the same on both).
// The rule is fixed (M = 1 direct, else onednn; blocked only when forced): the tactics round differently and an engine must give the
// same bits in every process, so the choice may not depend on a timing taken at load.
// KILN_FUSED_MLP_TACTIC=direct|blocked|onednn forces one (tests, benchmarks); direct_generic and
// blocked_generic force the portable loops (so tests cover them on AVX-512 machines too).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/onednn_gemm.h"
#include "backends/cpu/vec_math.h"
#include "ops/fused_mlp.h"

namespace kiln::cpu {
namespace {

constexpr const char* kKernelName = "cpu.f32.fused_mlp";
constexpr const char* kPanelLayout = "cpu.panel64";
constexpr int64_t kPanel = 64;      // output columns per panel: 4 zmm accumulators per row
constexpr int64_t kDirectRows = 4;  // direct: rows per pass over the weights
constexpr int kTileRows = 6;        // blocked: 6 rows x 4 zmm = 24 accumulators (+4 weights, 1 broadcast of 32)
// blocked: rows per block between layers. h1+h2 of a block = 96 x (256+128) x 4 B = 147 KB for the course
// MLP: beside its 0.94 MB of weights in a 2 MB L2 (Sapphire Rapids).
constexpr int64_t kBlockRows = 96;

enum class Tactic { kDirect, kBlocked, kOnednn };

const char* tactic_name(Tactic t) {
  return t == Tactic::kDirect ? "direct" : t == Tactic::kBlocked ? "blocked" : "onednn";
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// [N,K] -> panels: columns p0 .. p0+P-1 (P = min(64, N - p0)) stored [K][P] at offset p0*K. Same element
// count as [N,K], so the value keeps its logical shape.
std::vector<float> to_panels(const float* nk, int64_t n, int64_t k) {
  std::vector<float> out(static_cast<size_t>(n * k));
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < p; ++j) out[p0 * k + kk * p + j] = nk[(p0 + j) * k + kk];
  }
  return out;
}

std::vector<float> from_panels(const float* pan, int64_t n, int64_t k) {
  std::vector<float> out(static_cast<size_t>(n * k));
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < p; ++j) out[(p0 + j) * k + kk] = pan[p0 * k + kk * p + j];
  }
  return out;
}

// ---- one layer over R rows (x: R rows of K, y: R rows of N) ----

// direct, AVX-512: one panel, R rows, C zmm columns; with kTail the last one is masked by `tail` (a ragged last
// panel). kTwoChains (direct, one row): one row has only C FMA chains; a second accumulator set over odd k
// keeps 2C in flight (FMA latency 4). Otherwise each output is bias + x[0]w[0] + x[1]w[1] + ... in k order,
// one FMA at a time. Full panels have no masks at all: GCC 12 keeps a copy of every accumulator on the stack, stored
// each k step, when the loop holds a masked load.
template <bool kTail>
__attribute__((target("avx512f"), always_inline)) inline __m512 load_zmm(bool last, __mmask16 tail, const float* at) {
  return kTail && last ? _mm512_maskz_loadu_ps(tail, at) : _mm512_loadu_ps(at);
}

// acc[r][c] += x[r][kk] * panel[kk][c] for kk in [k0, k1), one FMA per element per step, in k order.
template <int R, int C, bool kTail>
__attribute__((target("avx512f"), always_inline)) inline void fma_steps(__m512 (&acc)[R][C], const float* x, int64_t k,
                                                                       int64_t k0, int64_t k1, const float* wp,
                                                                       int64_t p, __mmask16 tail) {
  for (int64_t kk = k0; kk < k1; ++kk) {
    const float* w = wp + kk * p;
    __m512 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = load_zmm<kTail>(c == C - 1, tail, w + 16 * c);
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r * k + kk]);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xb, wv[c], acc[r][c]);
    }
  }
}

template <int R, int C, bool kTail, bool kTwoChains>
__attribute__((target("avx512f"))) void panel_avx512(const float* x, int64_t k, const float* wp, int64_t p,
                                                     __mmask16 tail, const float* bias, float* y, int64_t n) {
  static_assert(!kTwoChains || R == 1);
  __m512 acc[R][C], acc2[C];
  for (int c = 0; c < C; ++c) {
    const __m512 b = load_zmm<kTail>(c == C - 1, tail, bias + 16 * c);
    for (int r = 0; r < R; ++r) acc[r][c] = b;
    acc2[c] = _mm512_setzero_ps();
  }
  int64_t kk = 0;
  if constexpr (kTwoChains) {
    for (; kk + 2 <= k; kk += 2) {
      const float* w0 = wp + kk * p;
      const float* w1 = w0 + p;
      const __m512 x0 = _mm512_set1_ps(x[kk]), x1 = _mm512_set1_ps(x[kk + 1]);
      for (int c = 0; c < C; ++c) {
        acc[0][c] = _mm512_fmadd_ps(x0, load_zmm<kTail>(c == C - 1, tail, w0 + 16 * c), acc[0][c]);
        acc2[c] = _mm512_fmadd_ps(x1, load_zmm<kTail>(c == C - 1, tail, w1 + 16 * c), acc2[c]);
      }
    }
  }
  fma_steps<R, C, kTail>(acc, x, k, kk, k, wp, p, tail);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      __m512 v = kTwoChains ? _mm512_add_ps(acc[r][c], acc2[c]) : acc[r][c];
      if (kTail && c == C - 1) _mm512_mask_storeu_ps(y + r * n + 16 * c, tail, v);
      else _mm512_storeu_ps(y + r * n + 16 * c, v);
    }
}

// All panels of one layer for R rows.
template <int R, bool kTwoChains>
__attribute__((target("avx512f"))) void dense_avx512(const float* x, int64_t k, const float* w, const float* bias,
                                                     int64_t n, float* y) {
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    const float* wp = w + p0 * k;
    const float* b = bias + p0;
    float* yp = y + p0;
    if (p == kPanel) {
      panel_avx512<R, 4, false, kTwoChains>(x, k, wp, p, 0, b, yp, n);
      continue;
    }
    const __mmask16 tail = __mmask16((1u << (p % 16)) - 1);
    switch ((p + 15) / 16 + (p % 16 ? 0 : 4)) {  // 1-3: ragged last zmm; 5-7: whole zmms
      case 1: panel_avx512<R, 1, true, kTwoChains>(x, k, wp, p, tail, b, yp, n); break;
      case 2: panel_avx512<R, 2, true, kTwoChains>(x, k, wp, p, tail, b, yp, n); break;
      case 3: panel_avx512<R, 3, true, kTwoChains>(x, k, wp, p, tail, b, yp, n); break;
      case 5: panel_avx512<R, 1, false, kTwoChains>(x, k, wp, p, 0, b, yp, n); break;
      case 6: panel_avx512<R, 2, false, kTwoChains>(x, k, wp, p, 0, b, yp, n); break;
      default: panel_avx512<R, 3, false, kTwoChains>(x, k, wp, p, 0, b, yp, n); break;
    }
  }
}

// blocked: R rows x one panel over k in [k0, k1): the accumulators start from the bias (first chunk) or
// from what the previous chunk stored in y, and go back to y (ReLU on the last chunk when relu). Storing
// and reloading is exact, so each output is still bias + the k-ordered FMA chain.
template <int R, int C, bool kTail>
__attribute__((target("avx512f"))) void tile_chunk_avx512(const float* x, int64_t k, int64_t k0, int64_t k1,
                                                          const float* wp, int64_t p, __mmask16 tail,
                                                          const float* bias, float* y, int64_t n, bool relu) {
  __m512 acc[R][C];
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r) acc[r][c] = load_zmm<kTail>(c == C - 1, tail, k0 == 0 ? bias + 16 * c : y + r * n + 16 * c);
  fma_steps<R, C, kTail>(acc, x, k, k0, k1, wp, p, tail);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      __m512 v = acc[r][c];
      // max(v, +0) has the bits of v > 0 ? v : 0 (-0 and NaN included); maskz_max because plain max_ps
      // trips GCC 12's -Wuninitialized inside its header.
      if (relu) v = _mm512_maskz_max_ps(__mmask16(0xFFFF), v, _mm512_setzero_ps());
      if (kTail && c == C - 1) _mm512_mask_storeu_ps(y + r * n + 16 * c, tail, v);
      else _mm512_storeu_ps(y + r * n + 16 * c, v);
    }
}

// blocked: the next block's X, pulled into L2 a few lines per tile while this block computes, so layer 1
// does not wait on DRAM (in the panel-outer order a tile reads only 8 lines of each of its 6 rows per chunk,
// too short a stream for the hardware prefetcher).
struct NextRows {
  const char* at = nullptr;
  const char* end = nullptr;
  void step() {
    for (int i = 0; i < 16 && at < end; ++i, at += 64) _mm_prefetch(at, _MM_HINT_T1);
  }
};

// blocked, panel-outer order: one panel for `rows` rows, K in chunks: a chunk of the panel (128 x 64 = 32 KB) stays
// in L1 while every 6-row tile of the block uses it, instead of each tile streaming the panel from L2.
template <int C, bool kTail>
__attribute__((target("avx512f"))) void panel_block_avx512(const float* x, int64_t rows, int64_t k, const float* wp,
                                                           int64_t p, __mmask16 tail, const float* bias, float* y,
                                                           int64_t n, bool relu, NextRows& next, int64_t chunk_k) {
  for (int64_t k0 = 0; k0 < k; k0 += chunk_k) {
    const int64_t k1 = std::min(k, k0 + chunk_k);
    const bool act = relu && k1 == k;
    int64_t r = 0;
    for (; r + kTileRows <= rows; r += kTileRows) {
      next.step();
      tile_chunk_avx512<kTileRows, C, kTail>(x + r * k, k, k0, k1, wp, p, tail, bias, y + r * n, n, act);
    }
    const float* xr = x + r * k;
    float* yr = y + r * n;
    switch (rows - r) {
      case 5: tile_chunk_avx512<5, C, kTail>(xr, k, k0, k1, wp, p, tail, bias, yr, n, act); break;
      case 4: tile_chunk_avx512<4, C, kTail>(xr, k, k0, k1, wp, p, tail, bias, yr, n, act); break;
      case 3: tile_chunk_avx512<3, C, kTail>(xr, k, k0, k1, wp, p, tail, bias, yr, n, act); break;
      case 2: tile_chunk_avx512<2, C, kTail>(xr, k, k0, k1, wp, p, tail, bias, yr, n, act); break;
      case 1: tile_chunk_avx512<1, C, kTail>(xr, k, k0, k1, wp, p, tail, bias, yr, n, act); break;
      default: break;
    }
  }
}

// blocked, tile-outer order: R rows through every panel over the whole of K (the A tile stays in L1 across
// the panels; each panel streams from L2 in one sequential pass). kHalf: a full panel as two 32-column
// halves (R up to 12 rows x 2 zmm: half the weight bytes per FMA of 6 x 4).
template <int R, bool kHalf>
__attribute__((target("avx512f"))) void tile_all_panels_avx512(const float* x, int64_t k, const float* w,
                                                               const float* bias, int64_t n, float* y, bool relu) {
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    const float* wp = w + p0 * k;
    if (kHalf && p == kPanel) {
      for (int h = 0; h < 2; ++h)
        tile_chunk_avx512<R, 2, false>(x, k, 0, k, wp + 32 * h, p, 0, bias + p0 + 32 * h, y + p0 + 32 * h, n, relu);
      continue;
    }
    const __mmask16 tail = __mmask16((1u << (p % 16)) - 1);
    switch ((p + 15) / 16 + (p % 16 ? 0 : 4)) {  // 1-3: ragged last zmm; 5-8: whole zmms
      case 1: tile_chunk_avx512<R, 1, true>(x, k, 0, k, wp, p, tail, bias + p0, y + p0, n, relu); break;
      case 2: tile_chunk_avx512<R, 2, true>(x, k, 0, k, wp, p, tail, bias + p0, y + p0, n, relu); break;
      case 3: tile_chunk_avx512<R, 3, true>(x, k, 0, k, wp, p, tail, bias + p0, y + p0, n, relu); break;
      case 5: tile_chunk_avx512<R, 1, false>(x, k, 0, k, wp, p, 0, bias + p0, y + p0, n, relu); break;
      case 6: tile_chunk_avx512<R, 2, false>(x, k, 0, k, wp, p, 0, bias + p0, y + p0, n, relu); break;
      case 7: tile_chunk_avx512<R, 3, false>(x, k, 0, k, wp, p, 0, bias + p0, y + p0, n, relu); break;
      default: tile_chunk_avx512<R, 4, false>(x, k, 0, k, wp, p, 0, bias + p0, y + p0, n, relu); break;
    }
  }
}

// blocked, tile-outer order over a block: T-row tiles, then the ragged rest (fewer rows, same arithmetic).
template <int T, bool kHalf>
__attribute__((target("avx512f"))) void tiles_outer_avx512(const float* x, int64_t rows, int64_t k, const float* w,
                                                           const float* bias, int64_t n, float* y, bool relu,
                                                           NextRows& next) {
  int64_t r = 0;
  for (; r + T <= rows; r += T) {
    next.step();
    tile_all_panels_avx512<T, kHalf>(x + r * k, k, w, bias, n, y + r * n, relu);
  }
  const float* xr = x + r * k;
  float* yr = y + r * n;
  auto rest = [&]<int R>() {
    if constexpr (R < T) tile_all_panels_avx512<R, kHalf>(xr, k, w, bias, n, yr, relu);
  };
  switch (rows - r) {
    case 11: rest.template operator()<11>(); break;
    case 10: rest.template operator()<10>(); break;
    case 9: rest.template operator()<9>(); break;
    case 8: rest.template operator()<8>(); break;
    case 7: rest.template operator()<7>(); break;
    case 6: rest.template operator()<6>(); break;
    case 5: rest.template operator()<5>(); break;
    case 4: rest.template operator()<4>(); break;
    case 3: rest.template operator()<3>(); break;
    case 2: rest.template operator()<2>(); break;
    case 1: rest.template operator()<1>(); break;
    default: break;
  }
}

// blocked: one layer for `rows` rows (y: rows x n, pre-activation unless relu).
__attribute__((target("avx512f"))) void dense_block_avx512(const float* x, int64_t rows, int64_t k, const float* w,
                                                           const float* bias, int64_t n, float* y, bool relu,
                                                           NextRows& next, int64_t chunk_k, bool tall_tiles) {
  if (chunk_k == 0) {  // tile-outer order
    if (tall_tiles) tiles_outer_avx512<12, true>(x, rows, k, w, bias, n, y, relu, next);
    else tiles_outer_avx512<kTileRows, false>(x, rows, k, w, bias, n, y, relu, next);
    return;
  }
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    const float* wp = w + p0 * k;
    const float* b = bias + p0;
    float* yp = y + p0;
    const __mmask16 tail = __mmask16((1u << (p % 16)) - 1);
    switch ((p + 15) / 16 + (p % 16 ? 0 : 4)) {  // 1-3: ragged last zmm; 5-8: whole zmms
      case 1: panel_block_avx512<1, true>(x, rows, k, wp, p, tail, b, yp, n, relu, next, chunk_k); break;
      case 2: panel_block_avx512<2, true>(x, rows, k, wp, p, tail, b, yp, n, relu, next, chunk_k); break;
      case 3: panel_block_avx512<3, true>(x, rows, k, wp, p, tail, b, yp, n, relu, next, chunk_k); break;
      case 5: panel_block_avx512<1, false>(x, rows, k, wp, p, 0, b, yp, n, relu, next, chunk_k); break;
      case 6: panel_block_avx512<2, false>(x, rows, k, wp, p, 0, b, yp, n, relu, next, chunk_k); break;
      case 7: panel_block_avx512<3, false>(x, rows, k, wp, p, 0, b, yp, n, relu, next, chunk_k); break;
      default: panel_block_avx512<4, false>(x, rows, k, wp, p, 0, b, yp, n, relu, next, chunk_k); break;
    }
  }
}

// Any x86-64 CPU: the same layout, a loop GCC vectorizes (compiled for AVX2 too, picked at load time).
__attribute__((target_clones("avx2", "default"))) void dense_generic(const float* x, int64_t rows, int64_t k,
                                                                    const float* w, const float* bias, int64_t n,
                                                                    float* y) {
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    const float* wp = w + p0 * k;
    for (int64_t r = 0; r < rows; ++r) {
      float acc[kPanel];
      for (int64_t j = 0; j < p; ++j) acc[j] = bias[p0 + j];
      for (int64_t kk = 0; kk < k; ++kk) {
        const float xv = x[r * k + kk];
        const float* wk = wp + kk * p;
        for (int64_t j = 0; j < p; ++j) acc[j] += xv * wk[j];
      }
      for (int64_t j = 0; j < p; ++j) y[r * n + p0 + j] = acc[j];
    }
  }
}

void activate(float* y, int64_t count, Activation a, float alpha) {
  switch (a) {
    case Activation::kNone: break;
    case Activation::kRelu:
      for (int64_t i = 0; i < count; ++i) y[i] = y[i] > 0.f ? y[i] : 0.f;
      break;
    case Activation::kLeakyRelu:
      for (int64_t i = 0; i < count; ++i) y[i] = y[i] >= 0.f ? y[i] : alpha * y[i];
      break;
    case Activation::kSigmoid:
      for (int64_t i = 0; i < count; ++i) y[i] = fast_sigmoid(y[i]);
      break;
    case Activation::kTanh:
      for (int64_t i = 0; i < count; ++i) y[i] = fast_tanh(y[i]);
      break;
  }
}

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

// ---- the network as the kernel sees it (engine load, shared by every context) ----

struct Layer {
  int64_t k = 0, n = 0;
  Activation act = Activation::kNone;
  float alpha = 0.01f;
  Tensor panels;  // [N,K] in cpu.panel64 order (the engine's constant, or packed at load)
  Tensor nk;      // [N,K] plain, for the onednn tactic (only when it is forced)
  Tensor bias;    // [N]
};

struct Mlp {
  std::vector<Layer> layers;
  bool avx512 = false;  // the hand-written tactics' AVX-512 code (else the portable loop)
  int64_t max_n = 0;
  int64_t chunk_k = 0;  // blocked: K steps per pass over a block's panel; 0 = tile-outer order
  bool tall_tiles = false;  // blocked, tile-outer: 12 x 32 register tiles instead of 6 x 64
  bool forced = false;  // KILN_FUSED_MLP_TACTIC pinned `forced_tactic` for every M
  Tactic forced_tactic = Tactic::kBlocked;
  std::string note;     // for kiln inspect

  Tactic tactic_for(int64_t m) const {
    if (forced) return forced_tactic;
    return m == 1 ? Tactic::kDirect : Tactic::kOnednn;
  }
};

// 64-byte-aligned float buffer, allocated only by grow() (reshape), never on the hot path.
class AlignedFloats {
 public:
  float* data() const { return p_.get(); }
  size_t size() const { return size_; }
  void grow(size_t count) {
    if (count <= size_) return;
    const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
    p_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
    size_ = p_ ? count : 0;
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> p_;
  size_t size_ = 0;
};

class FusedMlpKernel final : public CpuKernel {
 public:
  FusedMlpKernel(std::shared_ptr<const Mlp> mlp, std::string layer)
      : mlp_(std::move(mlp)), layer_(std::move(layer)) {
    direct_scratch_.grow(static_cast<size_t>(2 * kDirectRows * mlp_->max_n));
  }

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>&) override {
    const Dims& x = in[0].shape;
    m_ = volume(Dims(x.begin(), x.end() - 1));  // leading dims flattened into rows
    tactic_ = mlp_->tactic_for(m_);
    if (m_ == 0) return Status::ok();
    if (!direct_scratch_.data()) return Status(StatusCode::kRuntimeError, "cannot allocate the direct tactic's rows");
    if (tactic_ == Tactic::kBlocked) return reshape_blocked();
    if (tactic_ == Tactic::kOnednn) return reshape_onednn();
    return Status::ok();
  }

  Status run(const void* const* in, void* const* out) override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    if (m_ == 0) return Status::ok();
    switch (tactic_) {
      case Tactic::kDirect: run_direct(x, y); return Status::ok();
      case Tactic::kBlocked: run_blocked(x, y); return Status::ok();
      case Tactic::kOnednn: return run_onednn(x, y);
    }
    return Status::ok();
  }

 private:
  // Threads the blocked tactic may use: the OpenMP team size the context asked for, up to the scratch slots.
  int blocked_threads() const { return std::max(1, std::min(omp_get_max_threads(), block_slots_)); }

  Status reshape_blocked() {
    // One scratch slot per thread that may run: the context's thread count is set per run, so size for the
    // most it can be (OMP_NUM_THREADS or the cores); a later run with more threads is capped to the slots.
    block_slots_ = std::max(omp_get_max_threads(), omp_get_num_procs());
    block_rows_ = std::min<int64_t>(kBlockRows, ceil_div(m_, kTileRows) * kTileRows);
    // Slots a whole number of 4 KiB pages apart: no two threads write one cache line or page.
    slot_floats_ = ceil_div(2 * block_rows_ * mlp_->max_n, 1024) * 1024;
    block_scratch_.grow(static_cast<size_t>(block_slots_ * slot_floats_));
    if (!block_scratch_.data())
      return Status(StatusCode::kRuntimeError,
                    fmt::format("cannot allocate {} threads' blocked-tactic scratch ({} floats each)", block_slots_,
                                slot_floats_));
    return Status::ok();
  }

  Status reshape_onednn() {
    const auto& layers = mlp_->layers;
    if (gemms_.empty()) {
      for (const Layer& l : layers) {
        GemmAttrs at;
        at.trans_b = true;  // W is [N,K]
        at.activation = l.act;
        at.activation_alpha = l.alpha;
        auto g = make_onednn_gemm(layer_, at, &l.nk, &l.bias);
        if (!g.is_ok()) return g.status();
        gemms_.push_back(std::move(g).value());
      }
    }
    for (auto& b : between_) b.resize(static_cast<size_t>(m_ * mlp_->max_n));
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& l = layers[i];
      Status s = gemms_[i]->reshape({{DataType::kFloat32, {m_, l.k}}, {DataType::kFloat32, {l.n, l.k}},
                                     {DataType::kFloat32, {l.n}}},
                                    {{DataType::kFloat32, {m_, l.n}}});
      if (!s.is_ok()) return s;
    }
    return Status::ok();
  }

  void run_direct(const float* x, float* y) {
    const auto& layers = mlp_->layers;
    const bool avx512 = mlp_->avx512;
    float* buf[2] = {direct_scratch_.data(), direct_scratch_.data() + kDirectRows * mlp_->max_n};
    for (int64_t m0 = 0; m0 < m_; m0 += kDirectRows) {
      const int64_t rows = std::min(kDirectRows, m_ - m0);
      const float* h = x + m0 * layers.front().k;
      for (size_t i = 0; i < layers.size(); ++i) {
        const Layer& l = layers[i];
        float* o = i + 1 == layers.size() ? y + m0 * l.n : buf[i % 2];
        const float* w = l.panels.data<float>();
        const float* b = l.bias.data<float>();
        if (!avx512) dense_generic(h, rows, l.k, w, b, l.n, o);
        else if (rows == 4) dense_avx512<4, false>(h, l.k, w, b, l.n, o);
        else if (rows == 3) dense_avx512<3, false>(h, l.k, w, b, l.n, o);
        else if (rows == 2) dense_avx512<2, false>(h, l.k, w, b, l.n, o);
        else dense_avx512<1, true>(h, l.k, w, b, l.n, o);
        activate(o, rows * l.n, l.act, l.alpha);
        h = o;
      }
    }
  }

  // Rows [r0, r1) through the whole network, kBlockRows at a time, intermediates in `scratch`.
  void blocked_rows(const float* x, float* y, int64_t r0, int64_t r1, float* scratch) const {
    const auto& layers = mlp_->layers;
    float* buf[2] = {scratch, scratch + block_rows_ * mlp_->max_n};
    for (int64_t m0 = r0; m0 < r1; m0 += block_rows_) {
      const int64_t rows = std::min(block_rows_, r1 - m0);
      const int64_t k0 = layers.front().k;
      const float* h = x + m0 * k0;
      NextRows next{reinterpret_cast<const char*>(x + (m0 + rows) * k0),
                    reinterpret_cast<const char*>(x + std::min(r1, m0 + rows + block_rows_) * k0)};
      for (size_t i = 0; i < layers.size(); ++i) {
        const Layer& l = layers[i];
        float* o = i + 1 == layers.size() ? y + m0 * l.n : buf[i % 2];
        const float* w = l.panels.data<float>();
        const float* b = l.bias.data<float>();
        if (!mlp_->avx512) {
          dense_generic(h, rows, l.k, w, b, l.n, o);
          activate(o, rows * l.n, l.act, l.alpha);
        } else {
          dense_block_avx512(h, rows, l.k, w, b, l.n, o, l.act == Activation::kRelu, next, mlp_->chunk_k, mlp_->tall_tiles);
          if (l.act != Activation::kRelu) activate(o, rows * l.n, l.act, l.alpha);
        }
        h = o;
      }
    }
  }

  void run_blocked(const float* x, float* y) {
    // Equal shares of whole tiles per thread (a thread's rows are contiguous: X and Y stream once).
    const int threads = blocked_threads();
    const int64_t share = ceil_div(ceil_div(m_, threads), kTileRows) * kTileRows;
    const int teams = static_cast<int>(ceil_div(m_, share));
    if (teams <= 1) {
      blocked_rows(x, y, 0, m_, block_scratch_.data());
      return;
    }
#pragma omp parallel num_threads(teams)
    {
      const int t = omp_get_thread_num();
      const int64_t r0 = t * share;
      if (r0 < m_) blocked_rows(x, y, r0, std::min(m_, r0 + share), block_scratch_.data() + t * slot_floats_);
    }
  }

  Status run_onednn(const float* x, float* y) {
    const float* h = x;
    for (size_t i = 0; i < gemms_.size(); ++i) {
      float* o = i + 1 == gemms_.size() ? y : between_[i % 2].data();
      const void* ins[3] = {h, nullptr, nullptr};
      void* outs[1] = {o};
      Status s = gemms_[i]->run(ins, outs);
      if (!s.is_ok()) return s;
      h = o;
    }
    return Status::ok();
  }

  std::shared_ptr<const Mlp> mlp_;
  std::string layer_;
  int64_t m_ = 0;
  Tactic tactic_ = Tactic::kDirect;
  AlignedFloats direct_scratch_;  // direct: two [4, max N] row blocks between layers
  AlignedFloats block_scratch_;   // blocked: per thread slot, two [block_rows_, max N] blocks
  int block_slots_ = 0;
  int64_t block_rows_ = kBlockRows;
  int64_t slot_floats_ = 0;
  std::vector<std::unique_ptr<CpuKernel>> gemms_;  // onednn: one matmul per layer, made on first use
  std::vector<float> between_[2];                  // onednn: [M, max N] activations between layers
};

Result<std::shared_ptr<const Mlp>> prepare(const Node& n, const Graph& g) {
  auto at = FusedMlpAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  const char* env = std::getenv("KILN_FUSED_MLP_TACTIC");
  const std::string force = env ? env : "";
  const bool generic = force.size() > 8 && force.compare(force.size() - 8, 8, "_generic") == 0;
  const std::string forced_name = generic ? force.substr(0, force.size() - 8) : force;
  auto mlp = std::make_shared<Mlp>();
  if (forced_name == "direct") mlp->forced_tactic = Tactic::kDirect;
  else if (forced_name == "blocked") mlp->forced_tactic = Tactic::kBlocked;
  else if (forced_name == "onednn" && !generic) mlp->forced_tactic = Tactic::kOnednn;
  else if (!force.empty())
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("KILN_FUSED_MLP_TACTIC='{}' (want direct, blocked, onednn, direct_generic or "
                              "blocked_generic)", force));
  mlp->forced = !force.empty();
  // Experiment knob (benchmarks): the blocked tactic's loop order, 0 = tile-outer (the default), else
  // panel-outer with K in chunks of this many steps. Both orders give the same bits. Xeon, batch 8192, one
  // thread, against the onednn tactic in the same process: tile-outer 1.03-1.04x its time, chunks of 128
  // 1.16-1.17x.
  if (const char* c = std::getenv("KILN_FUSED_MLP_KCHUNK")) mlp->chunk_k = std::max(0, std::atoi(c));
  // KILN_FUSED_MLP_TILE=12x32: tile-outer with 12 x 32 tiles (Xeon, one thread, against the onednn tactic in
  // the same process: 0.81x and 1.11x in two runs, 6 x 64: 0.98x and 0.98x; the VM's noise hid any difference).
  if (const char* t = std::getenv("KILN_FUSED_MLP_TILE")) mlp->tall_tiles = std::string(t) == "12x32";
  mlp->avx512 = cpu_has_avx512() && !generic;
  for (int i = 0; i < at->layers(); ++i) {
    Layer l;
    const Tensor& w = *g.values[n.inputs[fused_mlp_weight_input(i)]].constant;
    l.n = w.shape[0];
    l.k = w.shape[1];
    l.act = at->activations[i];
    l.alpha = at->activation_alphas[i];
    l.bias = *g.values[n.inputs[fused_mlp_bias_input(i)]].constant;
    const bool packed = at->weight_layout == kPanelLayout;  // else "nk" (weight prepacking turned off)
    l.panels = packed ? w : Tensor::from_vector(DataType::kFloat32, w.shape, to_panels(w.data<float>(), l.n, l.k));
    if (!mlp->forced || mlp->forced_tactic == Tactic::kOnednn)
      l.nk = packed ? Tensor::from_vector(DataType::kFloat32, w.shape, from_panels(w.data<float>(), l.n, l.k)) : w;
    mlp->max_n = std::max(mlp->max_n, l.n);
    mlp->layers.push_back(std::move(l));
  }
  const std::string isa = mlp->avx512 ? "avx512" : "generic";
  if (mlp->forced) {
    mlp->note = fmt::format("{} for every M (forced by KILN_FUSED_MLP_TACTIC; hand-written kernels: {})",
                            tactic_name(mlp->forced_tactic), isa);
  } else {
    // Fixed: the same engine must give the same bits in every process (a crossover timed at load let two
    // processes disagree at the same M). Direct at M = 1 (Xeon, one thread: 9.0 us); onednn from M = 2:
    // the blocked tactic measured 1.0-1.1x the onednn tactic's time on the Xeon and, in bench/compare.py
    // on 2026-11-25, 35.1 ms against the bare oneDNN chain's 26.1 ms at batch 8192 on one thread, so it
    // stays behind KILN_FUSED_MLP_TACTIC=blocked until it is faster.
    mlp->note = fmt::format("direct ({}, {}) for M = 1, onednn (a oneDNN matmul chain) from M = 2 (fixed rule)",
                            isa, kPanelLayout);
  }
  return std::shared_ptr<const Mlp>(std::move(mlp));
}

// ---- registration ----

Status supports(const Node& n, const Graph& g) {
  auto at = FusedMlpAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  if (at->weight_layout != "nk" && at->weight_layout != kPanelLayout)
    return Status(StatusCode::kUnsupported, fmt::format("weights in layout '{}' (reads nk or {})", at->weight_layout,
                                                        kPanelLayout));
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const Value& v = g.values[n.inputs[i]];
    if (v.dtype != DataType::kFloat32)
      return Status(StatusCode::kUnsupported,
                    fmt::format("input '{}' is {}, {} runs float32 only", v.name, dtype_name(v.dtype), kKernelName));
    if (i > 0 && !v.constant)
      return Status(StatusCode::kUnsupported, fmt::format("{} needs constant weights and biases", kKernelName));
  }
  for (int i = 0; i < at->layers(); ++i)
    if (g.values[n.inputs[fused_mlp_weight_input(i)]].shape.size() != 2)
      return Status(StatusCode::kUnsupported, fmt::format("layer {}: W must be 2-D [N,K]", i));
  return Status::ok();
}

// Build time: W_i -> cpu.panel64 (same shape, panel order).
Status pack(Node& n, Graph& g) {
  auto at = FusedMlpAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  if (at->weight_layout != "nk") return Status::ok();
  for (int i = 0; i < at->layers(); ++i) {
    int& in = n.inputs[fused_mlp_weight_input(i)];
    const Tensor& w = *g.values[in].constant;
    Value v;
    v.name = g.values[in].name + "/" + kPanelLayout;
    v.set_constant(Tensor::from_vector(DataType::kFloat32, w.shape, to_panels(w.data<float>(), w.shape[0], w.shape[1])));
    in = g.add_value(std::move(v));
  }
  at->weight_layout = kPanelLayout;
  at->store(n);
  return Status::ok();
}

CpuKernelDef def() {
  CpuKernelDef d;
  d.name = kKernelName;
  d.domain = "kiln";
  d.op_type = "FusedMLP";
  d.priority = 10;
  d.supports = supports;
  d.pack = pack;
  d.prepare = [](const Node& n, const Graph& g) -> Result<std::shared_ptr<const void>> {
    auto m = prepare(n, g);
    if (!m.is_ok()) return m.status();
    return std::shared_ptr<const void>(std::move(m).value());
  };
  d.describe = [](const void* shared) { return static_cast<const Mlp*>(shared)->note; };
  d.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    auto mlp = std::static_pointer_cast<const Mlp>(init.shared);
    if (!mlp) return Status(StatusCode::kInternal, std::string(kKernelName) + " was created without prepare()");
    return std::unique_ptr<CpuKernel>(std::make_unique<FusedMlpKernel>(std::move(mlp), init.node.name));
  };
  return d;
}

const KernelRegistrar kFusedMlp{def()};

}  // namespace
}  // namespace kiln::cpu
