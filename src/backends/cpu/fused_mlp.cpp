// kiln.FusedMLP on float32 (ops/fused_mlp.h), two tactics behind one kernel:
//   direct: hand-written, for small M. Rows go through every layer in blocks of 4, the intermediate rows
//           in two small per-context buffers (L1-resident), bias and activation applied right there; one
//           thread, no allocation. At batch 1 the time is streaming each weight once from L2, so the
//           weights are packed at build time into "cpu.panel64": per block of 64 output columns, [K][64]
//           contiguous (one sequential stream per panel; each k step is 4 zmm loads that feed 4 FMA
//           chains per row). AVX-512 code picked at run time, with a portable loop over the same layout
//           for CPUs without it (the engine file is the same on both).
//   onednn: for large M, the layers as a chain of oneDNN matmuls (onednn_gemm.h, the per-layer path Gemm
//           uses, multi-threaded), weights unpacked to [N,K] at load time for it.
//   onednn_rows (KILN_FUSED_MLP_TACTIC=onednn_rows; an experiment, level with the chain on 16 Xeon threads): with
//           several threads, at least kMinSliceRows rows per thread and weights small enough to sit in every
//           core's L2 (kRowSplitWeightBytes), the rows are split over the threads and each runs the whole
//           chain on its own slice with one-thread primitives: no fork/join per layer, and a slice's hidden
//           activations stay in its core's caches. Level with the chain on the 2-core dev box.
// A node of precision bf16 (`kiln build --bf16`) runs with bf16 weights (converted at load) and bf16
// activations, float32 accumulation and output: on CPUs with AVX512_BF16 the direct tactic's BF16 twin
// (fused_mlp_bf16.h) below kBf16Crossover rows, else and from there the oneDNN chain in BF16 (oneDNN picks
// AMX-BF16 or AVX512_BF16 where the CPU has them, emulates them elsewhere), over blocks of rows whose input is
// converted to bf16 just before their matmuls (the separate conversion pass cost as much as the AMX chain).
// A node of precision tf32 (the default build; `kiln build --noTF32` makes it fp32) may trade float32's last bits
// for speed, as TF32 tensor cores do on the GPU. KILN_FUSED_MLP_TACTIC=bf16x3|bf16x3_rows runs its chain in split
// BF16 ("bf16x3", fused_mlp_bf16.h: each float32 operand as a sum of two bf16 values, three bf16 products per
// multiply-add, one matmul over 3K; any M and thread count, on any AVX-512 CPU): 3e-6 (Fashion-MNIST) to 9e-6 (the
// tests' random networks) relative error against float64, inside the fp32 tolerance, at a third of the AMX bf16
// rate. It is not the default: on the Xeon's AMX it beat float32 on one thread only, and only while the host's AMX
// ran at full rate (bare oneDNN bf16 chain 4.9 ms): 17.6-18.8 against 25.9 ms (GPU run 19), but 41 against 34 ms
// with that chain at 12.9 ms (run 22) and 44 against 28.5 ms from Python (run 20); on 2-16 threads it lost
// everywhere (bench/GPU_NOTES.md, session 12). Without AMX three AVX512_BF16 products cost more than one float32
// FMA (53 against 37 ms on the dev box). So tf32 runs as fp32 unless forced.
// The crossover M (direct below, onednn from it) is fixed (M = 1 runs direct): the two tactics round
// differently, and an engine must give the same bits in every process, so the choice may not depend on a
// timing taken at load. KILN_FUSED_MLP_TACTIC=auto times it at load instead (once per process per network
// shape, at the default thread count; for experiments), =direct|onednn forces one (tests, benchmarks);
// direct_generic forces the direct tactic's portable loop (so tests cover it on AVX-512 machines too).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <random>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_target.h"
#include "backends/cpu/fused_mlp_bf16.h"
#include "backends/cpu/onednn_gemm.h"
#include "backends/cpu/vec_math.h"
#include "ops/fused_mlp.h"

namespace kiln::cpu {
namespace {

constexpr const char* kKernelName = "cpu.f32.fused_mlp";
constexpr const char* kPanelLayout = "cpu.panel64";
constexpr int64_t kPanel = 64;     // output columns per panel: 4 zmm accumulators per row
constexpr int64_t kRowBlock = 4;   // rows per pass over the weights: each weight load feeds 4 rows' FMAs
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
// bf16: the direct kernel below this M, the oneDNN chain from it. Dev box, one thread (µs, direct vs chain):
// 4.5/6.4 (M=1), 4.8/6.8 (2), 7.5/8.2 (3), 8.8/10.6 (4), 17.7/19.1 (8); the direct kernel is one thread, the
// chain uses all, so it takes over at 4.
constexpr int64_t kBf16Crossover = 4;
constexpr int64_t kMinSliceRows = 64;                 // row split: at least this many rows per thread
// BF16 chain: rows per block per thread. 512 rows of the course MLP's input are 0.8 MB as bf16, which with the
// 0.47 MB of bf16 weights stays in a 2 MB L2 between the conversion and the first matmul.
constexpr int64_t kBf16BlockRowsPerThread = 512;
// bf16x3 (forced): rows per block per thread. Xeon (AMX-BF16, 2 MB L2 per core), GPU run 19, batch 8192, one
// thread, ms: 17.6-18.8 in blocks of 128 rows, 21.2-22.8 (256), 19.1-20.8 (512), 26.6-27.3 (all 8192 rows at
// once); 128 rows of the course MLP's split input (0.6 MB) and layer 1's split weights (1.2 MB) share the L2.
constexpr int64_t kBf16x3BlockRowsPerThread = 128;
constexpr size_t kRowSplitWeightBytes = size_t{4} << 20;  // row split: every thread streams all the weights

// [N,K] -> panels: columns p0 .. p0+P-1 (P = min(64, N - p0)) stored [K][P] at offset p0*K. Same element
// count as [N,K], so the value keeps its logical shape.
CacheLineVector<float> to_panels(const float* nk, int64_t n, int64_t k) {
  CacheLineVector<float> out(static_cast<size_t>(n * k));
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

// ---- direct tactic: one layer over R rows (x: R rows of K, y: R rows of N, pre-activation) ----

// AVX-512: one panel, R rows, C zmm columns (the last one masked by `tail`).
template <int R, int C>
__attribute__((target("avx512f"))) void panel_avx512(const float* x, int64_t k, const float* wp, int64_t p,
                                                     __mmask16 tail, const float* bias, float* y, int64_t n) {
  __m512 acc[R * C], acc2[C];
  init_panel_accumulators<R, C>(acc, acc2, bias, tail);
  int64_t kk = 0;
  if constexpr (R == 1) {  // one row has only C FMA chains: a second set over odd k keeps 2C in flight
    for (; kk + 2 <= k; kk += 2) {
      const float* w0 = wp + kk * p;
      const float* w1 = w0 + p;
      const __m512 x0 = _mm512_set1_ps(x[kk]), x1 = _mm512_set1_ps(x[kk + 1]);
      for (int c = 0; c < C; ++c) {
        const __mmask16 m = c == C - 1 ? tail : __mmask16(0xFFFF);
        acc[c] = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, w0 + 16 * c), acc[c]);
        acc2[c] = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(m, w1 + 16 * c), acc2[c]);
      }
    }
  }
  for (; kk < k; ++kk) {
    const float* w = wp + kk * p;
    __m512 wv[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) wv[c] = _mm512_maskz_loadu_ps(c == C - 1 ? tail : __mmask16(0xFFFF), w + 16 * c);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r * k + kk]);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r * C + c] = _mm512_fmadd_ps(xb, wv[c], acc[r * C + c]);
    }
  }
  store_panel_accumulators<R, C>(acc, acc2, tail, y, n);
}

template <int R>
__attribute__((target("avx512f"))) void dense_avx512(const float* x, int64_t k, const float* w, const float* bias,
                                                     int64_t n, float* y) {
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t p = std::min(kPanel, n - p0);
    const __mmask16 tail = p % 16 ? __mmask16((1u << (p % 16)) - 1) : __mmask16(0xFFFF);
    const float* wp = w + p0 * k;
    switch ((p + 15) / 16) {
      case 1: panel_avx512<R, 1>(x, k, wp, p, tail, bias + p0, y + p0, n); break;
      case 2: panel_avx512<R, 2>(x, k, wp, p, tail, bias + p0, y + p0, n); break;
      case 3: panel_avx512<R, 3>(x, k, wp, p, tail, bias + p0, y + p0, n); break;
      default: panel_avx512<R, 4>(x, k, wp, p, tail, bias + p0, y + p0, n); break;
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
  // [N,K] in cpu.panel64 order (the engine's constant, or packed at load), copied to cache-line boundaries:
  // each k step's 4 zmm loads then touch 4 lines, not 5 (a heap block is 16-byte aligned).
  CacheLineVector<float> panels;
  Tensor nk;      // [N,K] plain, for the onednn tactic (only when it can be chosen)
  Tensor nk3;     // bf16x3: [N,3K] float32 holding [hi | hi | lo] (only when it can be chosen)
  Tensor bias;    // [N]
  CacheLineVector<uint16_t> pairs;  // bf16 direct tactic: the weights as bf16 pair panels (fused_mlp_bf16.h)
};

struct Mlp {
  std::vector<Layer> layers;
  bool avx512 = false;  // the direct tactic's AVX-512 code (else the portable loop)
  int64_t max_n = 0;
  int64_t crossover = kNever;  // M from which the onednn tactic runs
  bool row_split = false;      // onednn: split the rows over the threads where there are enough
  bool bf16 = false;           // the node's precision is bf16 (direct: the BF16 kernel, onednn: in BF16)
  int64_t max_k2 = 0;          // bf16 direct: the widest layer input in pairs
  int64_t max_k = 0;           // the widest layer input
  bool x3 = false;             // onednn: the chain in split bf16 at every M (tf32 precision, forced)
  int64_t x3_block_rows = kBf16x3BlockRowsPerThread;  // KILN_BF16X3_BLOCK_ROWS overrides (experiments)
  std::string note;            // for kiln inspect
};

class FusedMlpKernel final : public CpuKernel {
 public:
  FusedMlpKernel(std::shared_ptr<const Mlp> mlp, std::string layer, int64_t crossover)
      : mlp_(std::move(mlp)), layer_(std::move(layer)), crossover_(crossover),
        block_(static_cast<size_t>(2 * kRowBlock * mlp_->max_n)),
        pairs_(static_cast<size_t>(2 * kRowBlock * mlp_->max_k2)) {}

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>&) override {
    const Dims& x = in[0].shape;
    m_ = volume(Dims(x.begin(), x.end() - 1));  // leading dims flattened into rows
    use_onednn_ = m_ >= crossover_;
    const int threads = omp_get_max_threads();  // the context's count (the backend set it before reshape)
    x3_ = use_onednn_ && mlp_->x3;
    if (!use_onednn_ || m_ == 0) return Status::ok();
    slice_rows_ = 0;
    // BF16 and bf16x3: the chain runs over blocks of rows per thread, each block's input converted just before
    // its matmuls (the bf16 copy is read back from cache, not memory); float32 runs all rows at once.
    const bool split = mlp_->row_split && threads > 1 && m_ >= kMinSliceRows * threads;
    const int64_t per_thread = !mlp_->bf16 && !x3_ ? m_ : x3_ ? mlp_->x3_block_rows : kBf16BlockRowsPerThread;
    block_rows_ = split ? per_thread : std::min(m_, per_thread * threads);
    // Hidden activations (float32, or bf16 in the same room) and a bf16 copy of the input (bf16x3: of each
    // layer's input, split): room for all M rows when split (each slice in its own part), else for one block.
    const int64_t room = split ? m_ : block_rows_;
    for (auto& b : between_) {
      Status s = resize_working(b, {room, mlp_->max_n}, "the activations between layers");
      if (!s.is_ok()) return s;
    }
    Status s = x3_            ? resize_working(x_bf16_, {room, 3, mlp_->max_k}, "the split bf16 input")
               : mlp_->bf16 ? resize_working(x_bf16_, {room, mlp_->layers.front().k}, "the bf16 input")
                            : Status::ok();
    if (!s.is_ok()) return s;
    if (split) return reshape_slices(threads);
    return reshape_blocks(blocks_, m_, false);
  }

  Status run(const void* const* in, void* const* out) override {
    const float* x = static_cast<const float*>(in[0]);
    float* y = static_cast<float*>(out[0]);
    if (m_ == 0) return Status::ok();
    if (use_onednn_) return run_onednn(x, y);
    if (mlp_->bf16) run_direct_bf16(x, y);
    else run_direct(x, y);
    return Status::ok();
  }

 private:
  void run_direct(const float* x, float* y) {
    const auto& layers = mlp_->layers;
    const bool avx512 = mlp_->avx512;
    float* buf[2] = {block_.data(), block_.data() + kRowBlock * mlp_->max_n};
    for (int64_t m0 = 0; m0 < m_; m0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, m_ - m0);
      const float* h = x + m0 * layers.front().k;
      for (size_t i = 0; i < layers.size(); ++i) {
        const Layer& l = layers[i];
        float* o = i + 1 == layers.size() ? y + m0 * l.n : buf[i % 2];
        const float* w = l.panels.data();
        const float* b = l.bias.data<float>();
        if (!avx512) dense_generic(h, rows, l.k, w, b, l.n, o);
        else if (rows == 4) dense_avx512<4>(h, l.k, w, b, l.n, o);
        else if (rows == 3) dense_avx512<3>(h, l.k, w, b, l.n, o);
        else if (rows == 2) dense_avx512<2>(h, l.k, w, b, l.n, o);
        else dense_avx512<1>(h, l.k, w, b, l.n, o);
        activate(o, rows * l.n, l.act, l.alpha);
        h = o;
      }
    }
  }

  // The direct tactic in BF16: each block of rows as bf16 pairs, every layer's float32 result through the
  // activation, rounded to bf16 pairs for the next layer (the last writes y).
  void run_direct_bf16(const float* x, float* y) {
    const auto& layers = mlp_->layers;
    float* f32 = block_.data();
    uint32_t* pairs[2] = {pairs_.data(), pairs_.data() + kRowBlock * mlp_->max_k2};
    for (int64_t m0 = 0; m0 < m_; m0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, m_ - m0);
      to_bf16_pairs(x + m0 * layers.front().k, rows, layers.front().k, pairs[0]);
      for (size_t i = 0; i < layers.size(); ++i) {
        const Layer& l = layers[i];
        const bool last = i + 1 == layers.size();
        float* o = last ? y + m0 * l.n : f32;
        dense_bf16(pairs[i % 2], rows, l.k, l.pairs.data(), l.bias.data<float>(), l.n, o);
        activate(o, rows * l.n, l.act, l.alpha);
        if (!last) to_bf16_pairs(o, rows, l.n, pairs[(i + 1) % 2]);
      }
    }
  }

  // One chain of oneDNN matmuls over some rows: float32 throughout, or (bf16) the input converted first,
  // bf16 weights and hidden activations, float32 accumulation and output, or (x3) every layer's input split
  // into bf16 [hi | lo | hi] against [hi | hi | lo] weights, float32 accumulation and activations.
  struct Chain {
    std::vector<std::unique_ptr<CpuKernel>> gemms;
    OnednnToBf16 to_bf16;
    bool x3 = false;
    bool one_thread = false;
    int64_t rows = 0;
  };
  // A run of rows through the chain in blocks of block_rows_: the full blocks' chain and the shorter last one's.
  struct Blocks {
    Chain full, tail;
  };

  Status reshape_blocks(Blocks& b, int64_t rows, bool one_thread) const {
    const int64_t block = std::min(block_rows_, rows);
    for (Chain* c : {&b.full, &b.tail}) {
      const int64_t r = c == &b.full ? block : rows % block;
      if (r == 0) continue;
      if (c->x3 != x3_) c->gemms.clear();  // made for the other kind of chain
      if (c->gemms.empty()) {
        Status s = make_chain(c, one_thread, x3_);
        if (!s.is_ok()) return s;
      }
      Status s = reshape_chain(*c, r, one_thread);
      if (!s.is_ok()) return s;
    }
    return Status::ok();
  }

  // Rows of x into y through b's chains, block by block, each block's activations at the start of buf0/buf1/x16.
  Status run_blocks(Blocks& b, int64_t rows, const float* x, float* y, float* buf0, float* buf1, uint16_t* x16) const {
    const int64_t block = std::min(block_rows_, rows);
    const int64_t k0 = mlp_->layers.front().k, n_out = mlp_->layers.back().n;
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      Chain& c = rows - r0 >= block ? b.full : b.tail;
      Status s = run_chain(c, x + r0 * k0, y + r0 * n_out, buf0, buf1, x16);
      if (!s.is_ok()) return block < rows ? std::move(s).with_context(fmt::format("rows {}..", r0)) : s;
    }
    return Status::ok();
  }

  Status make_chain(Chain* c, bool one_thread, bool x3) const {
    c->x3 = x3;
    c->one_thread = one_thread;
    const auto& layers = mlp_->layers;
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& l = layers[i];
      GemmAttrs at;
      at.trans_b = true;  // W is [N,K]
      at.activation = l.act;
      at.activation_alpha = l.alpha;
      MatmulTypes types;
      if (mlp_->bf16 || x3) {
        types.a = types.b = MatmulTypes::dt::bf16;
        types.y = i + 1 == layers.size() || x3 ? MatmulTypes::dt::f32 : MatmulTypes::dt::bf16;
      }
      auto g = make_onednn_gemm(layer_, at, x3 ? &l.nk3 : &l.nk, &l.bias, std::move(types), {}, one_thread);
      if (!g.is_ok()) return g.status();
      c->gemms.push_back(std::move(g).value());
    }
    return Status::ok();
  }

  Status reshape_chain(Chain& c, int64_t rows, bool one_thread) const {
    const auto& layers = mlp_->layers;
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& l = layers[i];
      const int64_t k = c.x3 ? 3 * l.k : l.k;
      Status s = c.gemms[i]->reshape(
          {{DataType::kFloat32, {rows, k}}, {DataType::kFloat32, {l.n, k}}, {DataType::kFloat32, {l.n}}},
          {{DataType::kFloat32, {rows, l.n}}});
      if (!s.is_ok()) return s;
    }
    c.rows = rows;
    return mlp_->bf16 && !c.x3 ? c.to_bf16.reshape(rows, layers.front().k, one_thread) : Status::ok();
  }

  // Row split: slice t is rows [t * slice_rows_, ...) (the last one shorter), its chains of one-thread matmuls,
  // in blocks of block_rows_ (BF16, bf16x3): every slice but the last a whole number of blocks, so only the last
  // has a shorter block (and a second chain for it).
  Status reshape_slices(int threads) {
    slice_rows_ = (m_ + threads - 1) / threads;
    if (slice_rows_ > block_rows_) slice_rows_ = (slice_rows_ + block_rows_ - 1) / block_rows_ * block_rows_;
    const size_t slices = static_cast<size_t>((m_ + slice_rows_ - 1) / slice_rows_);
    while (slice_blocks_.size() < slices) slice_blocks_.push_back(std::make_unique<Blocks>());
    for (size_t t = 0; t < slices; ++t) {
      const int64_t rows = std::min(slice_rows_, m_ - static_cast<int64_t>(t) * slice_rows_);
      Status s = reshape_blocks(*slice_blocks_[t], rows, true);
      if (!s.is_ok()) return std::move(s).with_context(fmt::format("row slice {} ({} rows)", t, rows));
    }
    slice_status_.assign(slices, Status::ok());
    return Status::ok();
  }

  // Runs a chain over its rows of x into y, hidden layers through buf[0..1] (each with room for rows x max N
  // floats); x16: room for rows x K0 bf16 values (bf16 chains), rows x 3 max K (x3 chains).
  Status run_chain(Chain& c, const float* x, float* y, float* buf0, float* buf1, uint16_t* x16) const {
    const void* h = x;
    if (x16 && !c.x3) {
      Status s = c.to_bf16.run(x, x16);
      if (!s.is_ok()) return s;
      h = x16;
    }
    for (size_t i = 0; i < c.gemms.size(); ++i) {
      float* o = i + 1 == c.gemms.size() ? y : (i % 2 ? buf1 : buf0);
      if (c.x3) {
        split_rows(static_cast<const float*>(h), c.rows, mlp_->layers[i].k, x16, c.one_thread);
        h = x16;
      }
      const void* ins[3] = {h, nullptr, nullptr};
      void* outs[1] = {o};
      Status s = c.gemms[i]->run(ins, outs);
      if (!s.is_ok()) return s;
      h = o;
    }
    return Status::ok();
  }

  // bf16x3: rows of x -> [hi | lo | hi], over the team unless the chain runs on one thread.
  static void split_rows(const float* x, int64_t rows, int64_t k, uint16_t* out, bool one_thread) {
    constexpr int64_t kRowsPerTask = 32;
    const int64_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for if (!one_thread && tasks > 1) schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t r0 = t * kRowsPerTask;
      to_bf16x3_rows(x + r0 * k, std::min(kRowsPerTask, rows - r0), k, out + r0 * 3 * k);
    }
  }

  Status run_onednn(const float* x, float* y) {
    uint16_t* x16 = mlp_->bf16 || x3_ ? x_bf16_.data() : nullptr;
    const int64_t k0 = mlp_->layers.front().k, n_out = mlp_->layers.back().n, max_n = mlp_->max_n;
    if (slice_rows_ == 0) return run_blocks(blocks_, m_, x, y, between_[0].data(), between_[1].data(), x16);
    const int slices = static_cast<int>(slice_status_.size());
    std::vector<Status>& status = slice_status_;  // sized at reshape: no allocation here
#pragma omp parallel for num_threads(slices) schedule(static, 1)
    for (int t = 0; t < slices; ++t) {
      const int64_t r0 = t * slice_rows_;  // a slice's rows in its own part of each buffer
      status[static_cast<size_t>(t)] = run_blocks(
          *slice_blocks_[static_cast<size_t>(t)], std::min(slice_rows_, m_ - r0), x + r0 * k0, y + r0 * n_out,
          between_[0].data() + r0 * max_n, between_[1].data() + r0 * max_n,
          x16 ? x16 + r0 * (x3_ ? 3 * mlp_->max_k : k0) : nullptr);
    }
    for (int t = 0; t < slices; ++t)
      if (!status[static_cast<size_t>(t)].is_ok())
        return std::move(status[static_cast<size_t>(t)]).with_context(fmt::format("row slice {} of {}", t, slices));
    return Status::ok();
  }

  std::shared_ptr<const Mlp> mlp_;
  std::string layer_;
  int64_t crossover_;
  int64_t m_ = 0;
  bool use_onednn_ = false;
  bool x3_ = false;                          // onednn in split bf16 at this M
  CacheLineVector<float> block_;             // direct: two [4, max N] row blocks between layers
  CacheLineVector<uint32_t> pairs_;          // bf16 direct: two [4, max K/2] blocks of bf16 pairs
  Blocks blocks_;                            // onednn: one matmul per layer, made on first use
  int64_t block_rows_ = 0;                   // onednn: rows per run of the chain (all of M, or bf16 blocks)
  std::vector<std::unique_ptr<Blocks>> slice_blocks_;  // row split: the chains of each slice
  int64_t slice_rows_ = 0;                   // row split: rows per slice (0: the plain chain)
  std::vector<Status> slice_status_;         // row split: each slice's result
  // On cache-line boundaries, as the weight panels: a tile or zmm load of a row that straddles two lines costs
  // two. (Tried against bf16x3's 18-or-43 ms timings on the Xeon; those were the host's AMX rate, GPU run 22.)
  CacheLineVector<float> between_[2];        // onednn: [M, max N] activations between layers
  CacheLineVector<uint16_t> x_bf16_;         // bf16: the input converted, [M, K0]; x3: a layer's input split
};

// ---- tactic choice at load ----

// Best-of time of one run at M rows (seconds), random inputs.
Result<double> time_at(FusedMlpKernel& k, const Mlp& mlp, int64_t m) {
  const int64_t k0 = mlp.layers.front().k, n = mlp.layers.back().n;
  std::vector<float> x(static_cast<size_t>(m * k0)), y(static_cast<size_t>(m * n));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& v : x) v = u(rng);
  Status s = k.reshape({{DataType::kFloat32, {m, k0}}}, {{DataType::kFloat32, {m, n}}});
  if (!s.is_ok()) return s;
  const void* in[1] = {x.data()};
  void* out[1] = {y.data()};
  using clock = std::chrono::steady_clock;
  double best = 1e9, total = 0;
  for (int rep = 0; rep < 200 && (rep < 5 || total < 2e-3); ++rep) {
    const auto t0 = clock::now();
    s = k.run(in, out);
    if (!s.is_ok()) return s;
    const double t = std::chrono::duration<double>(clock::now() - t0).count();
    if (rep > 0) best = std::min(best, t);  // the first run also creates/reorders
    total += t;
  }
  return best;
}

// The first M (from 1, 2, 4, ..., 512) at which onednn beats direct at two sizes in a row.
constexpr int64_t kFixedCrossover = 2;

Result<int64_t> time_crossover(const std::shared_ptr<const Mlp>& mlp, std::string* note) {
  FusedMlpKernel direct(mlp, "tactic timing", kNever), onednn(mlp, "tactic timing", 0);
  int64_t first_win = 0;
  std::string times;
  for (int64_t m = 1; m <= 512; m *= 2) {
    auto td = time_at(direct, *mlp, m);
    if (!td.is_ok()) return td.status();
    auto to = time_at(onednn, *mlp, m);
    if (!to.is_ok()) return to.status();
    times += fmt::format("{}M={}: {:.1f} vs {:.1f} us", times.empty() ? "" : ", ", m, *td * 1e6, *to * 1e6);
    if (*to < *td) {
      if (first_win) {
        *note = times;
        return first_win;
      }
      first_win = m;
    } else {
      first_win = 0;
    }
  }
  *note = times;
  return first_win ? first_win : 1024;
}

Result<std::shared_ptr<const Mlp>> prepare(const Node& n, const Graph& g) {
  auto at = FusedMlpAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  const char* env = std::getenv("KILN_FUSED_MLP_TACTIC");
  const std::string force = env ? env : "";
  if (!force.empty() && force != "direct" && force != "direct_generic" && force != "onednn" && force != "onednn_rows" &&
      force != "bf16x3" && force != "bf16x3_rows" && force != "auto")
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("KILN_FUSED_MLP_TACTIC='{}' (want direct, direct_generic, onednn, onednn_rows, bf16x3, "
                              "bf16x3_rows or auto)",
                              force));
  auto mlp = std::make_shared<Mlp>();
  mlp->avx512 = cpu_has_avx512() && force != "direct_generic";
  size_t weight_bytes = 0;
  for (int i = 0; i < at->layers(); ++i) {
    Layer l;
    const Tensor& w = *g.values[n.inputs[fused_mlp_weight_input(i)]].constant;
    l.n = w.shape[0];
    l.k = w.shape[1];
    l.act = at->activations[i];
    l.alpha = at->activation_alphas[i];
    l.bias = *g.values[n.inputs[fused_mlp_bias_input(i)]].constant;
    const bool packed = at->weight_layout == kPanelLayout;  // else "nk" (weight prepacking turned off)
    if (packed) l.panels.assign(w.data<float>(), w.data<float>() + w.elements());
    else l.panels = to_panels(w.data<float>(), l.n, l.k);
    if (force.rfind("direct", 0) != 0 || n.precision == "bf16")
      l.nk = packed ? Tensor::from_vector(DataType::kFloat32, w.shape, from_panels(w.data<float>(), l.n, l.k)) : w;
    mlp->max_n = std::max(mlp->max_n, l.n);
    mlp->max_k = std::max(mlp->max_k, l.k);
    weight_bytes += static_cast<size_t>(l.n * l.k) * sizeof(float);
    mlp->layers.push_back(std::move(l));
  }
  mlp->row_split = weight_bytes <= kRowSplitWeightBytes && (force == "onednn_rows" || force == "bf16x3_rows");
  const std::string isa = mlp->avx512 ? "avx512" : "generic";
  const std::string split =
      mlp->row_split ? fmt::format("; onednn rows split over the threads from {} rows per thread", kMinSliceRows) : "";
  if (n.precision == "bf16") {
    // The direct BF16 kernel needs AVX512_BF16 (else, or when KILN_FUSED_MLP_TACTIC forces onednn/onednn_rows,
    // the oneDNN chain at every M); a fixed crossover, as for FP32.
    mlp->bf16 = true;
    const bool direct = cpu_has_avx512_bf16() && force.rfind("onednn", 0) != 0;
    mlp->crossover = direct ? (force.rfind("direct", 0) == 0 ? kNever : kBf16Crossover) : 0;
    if (direct)
      for (Layer& l : mlp->layers) {
        l.pairs = to_bf16_pair_panels(l.nk.data<float>(), l.n, l.k);
        mlp->max_k2 = std::max({mlp->max_k2, (l.k + 1) / 2, (l.n + 1) / 2});
      }
    const std::string chain = fmt::format("oneDNN matmul chain in bf16 (oneDNN ISA {}), {} rows per thread at a time",
                                          target_isa(), kBf16BlockRowsPerThread);
    mlp->note = fmt::format("bf16 (bf16 weights and activations, float32 accumulation and output): {}{}",
                            !direct ? chain + " at every M"
                            : mlp->crossover == kNever
                                ? std::string("direct (avx512_bf16, bf16 pair panels), forced")
                                : fmt::format("direct (avx512_bf16, bf16 pair panels) for M < {}, {} from M = {} (fixed)",
                                              mlp->crossover, chain, mlp->crossover),
                            split);
    return std::shared_ptr<const Mlp>(std::move(mlp));
  }
  // tf32: split bf16 where forced, at every M.
  const bool x3_forced = force.rfind("bf16x3", 0) == 0;
  bool x3 = n.precision == "tf32" && x3_forced;
  for (const Layer& l : mlp->layers) x3 = x3 && l.k > 0;
  if (x3) {
    if (const char* rows = std::getenv("KILN_BF16X3_BLOCK_ROWS")) {
      char* end = nullptr;
      const long long v = std::strtoll(rows, &end, 10);
      if (end == rows || *end != '\0' || v < 1 || v > (1 << 20))
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("KILN_BF16X3_BLOCK_ROWS='{}' (want rows per thread per block, 1 to 1048576)", rows));
      mlp->x3_block_rows = v;
    }
    for (Layer& l : mlp->layers)
      l.nk3 = Tensor::from_vector(DataType::kFloat32, {l.n, 3 * l.k}, to_bf16x3_weights(l.nk.data<float>(), l.n, l.k));
    mlp->x3 = true;
  }
  const std::string x3_note =
      x3 ? fmt::format("; tf32: oneDNN matmul chain in split bf16 (bf16x3: three bf16 products over 3K, float32 "
                       "accumulation; oneDNN ISA {}), {} rows per thread at a time, at every M",
                       target_isa(), mlp->x3_block_rows)
         : "";
  if (x3_forced) {
    mlp->crossover = 0;
    mlp->note = fmt::format("{} (forced by KILN_FUSED_MLP_TACTIC){}{}", force,
                            x3 ? x3_note : fmt::format("; the node is {}: the float32 chain", n.precision), split);
    return std::shared_ptr<const Mlp>(std::move(mlp));
  }
  if (force == "direct" || force == "direct_generic" || force == "onednn" || force == "onednn_rows") {
    mlp->crossover = force.rfind("onednn", 0) == 0 ? 0 : kNever;
    mlp->note = fmt::format("{} (forced by KILN_FUSED_MLP_TACTIC; direct kernel: {}{})", force, isa, split);
    return std::shared_ptr<const Mlp>(std::move(mlp));
  }
  if (force != "auto") {
    // A fixed crossover: the same engine must give the same bits in every process, and a crossover timed at
    // load could differ between two processes at the same M (CI caught `kiln run` and the Python API
    // disagreeing at batch 8). M = 1 only, from the timings on both machines (Xeon 16 threads: 8.8 vs
    // 13.9 us at M=1, onednn ahead from M=2; dev box: direct ahead at M=1 on one thread).
    mlp->crossover = kFixedCrossover;
    mlp->note = fmt::format("direct ({}, {}) for M < {}, onednn from M = {} (fixed; KILN_FUSED_MLP_TACTIC=auto "
                            "times the crossover at load instead){}",
                            isa, kPanelLayout, mlp->crossover, mlp->crossover, split);
    return std::shared_ptr<const Mlp>(std::move(mlp));
  }
  // auto: networks of the same shape cross over at the same M: time each shape once per process.
  std::string key = fmt::format("{}t", omp_get_max_threads());
  for (const Layer& l : mlp->layers) key += fmt::format("|{}x{}:{}", l.k, l.n, activation_name(l.act));
  static std::mutex mu;
  static std::map<std::string, std::pair<int64_t, std::string>> timed;
  std::lock_guard<std::mutex> lock(mu);
  auto it = timed.find(key);
  if (it == timed.end()) {
    std::string times;
    auto c = time_crossover(mlp, &times);
    if (!c.is_ok()) return c.status();
    it = timed.emplace(key, std::make_pair(*c, times)).first;
  }
  mlp->crossover = it->second.first;
  mlp->note = fmt::format("direct ({}, {}) for M < {}, onednn from M = {} (timed at load with {} threads, "
                          "direct vs onednn: {}){}",
                          isa, kPanelLayout, mlp->crossover, mlp->crossover, omp_get_max_threads(), it->second.second,
                          split);
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
  if (n.precision != "fp32" && n.precision != "tf32" && n.precision != "bf16")
    return Status(StatusCode::kUnsupported, fmt::format("precision '{}' ({} runs fp32 or bf16)", n.precision, kKernelName));
  // prepare() reads the constants' own shapes: they must be [N_i, K_i] and [N_i], chained, and the shapes the
  // graph declares (a corrupt engine file can carry other tensors; shape inference only sees the declared).
  int64_t k = -1;
  for (int i = 0; i < at->layers(); ++i) {
    const Value& w = g.values[n.inputs[fused_mlp_weight_input(i)]];
    const Value& b = g.values[n.inputs[fused_mlp_bias_input(i)]];
    const Dims& ws = w.constant->shape;
    if (ws.size() != 2 || ws != w.shape || b.constant->shape != b.shape || volume(b.shape) != ws[0] ||
        (k >= 0 && ws[1] != k))
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("layer {}: W {} (declared {}) and bias {} (declared {}) are not [N, {}] and [N]", i,
                                dims_to_string(ws, ","), dims_to_string(w.shape, ","),
                                dims_to_string(b.constant->shape, ","), dims_to_string(b.shape, ","),
                                k >= 0 ? std::to_string(k) : "K"));
    if (n.precision == "bf16" && ws[1] == 0)
      return Status(StatusCode::kUnsupported, fmt::format("layer {}: K = 0 in bf16 (an empty product stays float32)", i));
    k = ws[0];
  }
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
    const int64_t crossover = mlp->crossover;
    return std::unique_ptr<CpuKernel>(std::make_unique<FusedMlpKernel>(std::move(mlp), init.node.name, crossover));
  };
  return d;
}

const KernelRegistrar kFusedMlp{def()};

}  // namespace
}  // namespace kiln::cpu
