// kiln.FusedMLP device code: the large-M row-tile kernel and the small-M cluster kernel (see fused_mlp.h for
// the packed layout and the design). No fmt here (nvcc 13): messages use cat().
//
// MMA fragments (mma.sync.m16n8k16.row.col, lane = 4g + t): A a0..a3 = A[g][2t..], A[g+8][2t..],
// A[g][2t+8..], A[g+8][2t+8..] (two halves each); B b0, b1 = W[n=g][2t..], W[g][2t+8..] (W stored [n][k], so
// B's K pairs are contiguous); C c0..c3 = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1].
// Shared-memory row strides are padded by 8 halves (16 bytes) so that the 32 lanes' 32-bit fragment loads
// (word 4g + t + const) land in 32 distinct banks.
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/fused_mlp.h"
#include "backends/cuda/fused_mlp_device.cuh"
#include "backends/cuda/gemm_elementwise.h"

namespace cg = cooperative_groups;

namespace kiln::cuda {
namespace {

using namespace fmlp;

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__host__ __device__ constexpr int round_up(int v, int to) { return (v + to - 1) / to * to; }
__host__ __device__ constexpr int padded_n(int n) { return round_up(n, kFmlpPadN); }
constexpr int kHLd = kFmlpMaxN + 8;  // hidden activations' row stride (halves), both kernels

// ---------------------------------------------------------------------------------------------------------
// Large M: 64 rows per CTA, 16 MMA warps as 2 (rows) x 8 (features), each 32 rows x Np/8 features.
//
// Warp-specialized: a producer warp streams the K-chunks (the chunk's pre-packed weight block, one contiguous
// smem image (fused_mlp.h), in one bulk copy; layer 0's X as 16-byte cp.async pieces over its 32 lanes,
// which arrive on the stage's barrier when they land) into a 3-stage ring of "full" mbarriers; the MMA
// warps wait on a stage, compute, and release it on its "empty" mbarrier, with no block-wide barrier per
// chunk (two named barriers per layer around the epilogue). float32 X is converted to float16 while
// forming the A fragments. The first version (per-thread cp.async for all
// loads, a __syncthreads per chunk, branches around every MMA group) took 47 us at M = 8192; see
// bench/GPU_NOTES.md for each step.

namespace lg {
constexpr int BM = kFmlpRowsLarge, KC = kFmlpChunkK, STAGES = 3;
constexpr int MMA_WARPS = 16, THREADS = (MMA_WARPS + 1) * 32;  // + one producer warp
constexpr int W_LD = kFmlpPackLd;                               // halves
constexpr int X_LD = KC + 8;  // X stage row stride (elements): conflict-free fragment loads
constexpr size_t kWStage = size_t(kFmlpMaxN) * W_LD * 2;
constexpr size_t x_stage(bool f32) { return size_t(BM) * X_LD * (f32 ? 4 : 2); }
constexpr size_t kH = size_t(BM) * kHLd * 2;
constexpr size_t smem(bool f32) { return STAGES * (x_stage(f32) + kWStage) + kH; }
}  // namespace lg
constexpr int kAccN = kFmlpMaxN / (lg::MMA_WARPS / 2) / 8;  // 8-feature tiles per MMA warp, at most

// Bias + activation of a warp's 32 x (8 ntw) tile; the last layer writes Y (its first L.n features), the
// others float16 activations into hs. Clears the accumulators for the next layer.
template <bool XF32, int ACT>
__device__ __forceinline__ void epilogue(float (&acc)[2][kAccN][4], const FmlpLayer& L, int ntw, int col0, int r,
                                         int64_t row0, bool last, const FmlpParams& p, __half* hs) {
#pragma unroll
  for (int j = 0; j < kAccN; ++j) {
    if (j < ntw) {
      const int col = col0 + j * 8;
      const float b0 = bias_at(L, col), b1 = bias_at(L, col + 1);
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int rr = r + mi * 16;
        const float v0 = epilogue_act<ACT>(L, acc[mi][j][0] + b0), v1 = epilogue_act<ACT>(L, acc[mi][j][1] + b1);
        const float v2 = epilogue_act<ACT>(L, acc[mi][j][2] + b0), v3 = epilogue_act<ACT>(L, acc[mi][j][3] + b1);
        if (last) {
          const int64_t r0 = row0 + rr, r1 = r0 + 8;
          const int n = L.n;
          if (r0 < p.m && col < n) store_y(p, r0 * n + col, v0);
          if (r0 < p.m && col + 1 < n) store_y(p, r0 * n + col + 1, v1);
          if (r1 < p.m && col < n) store_y(p, r1 * n + col, v2);
          if (r1 < p.m && col + 1 < n) store_y(p, r1 * n + col + 1, v3);
        } else {
          *reinterpret_cast<uint32_t*>(hs + rr * kHLd + col) = pack_half2(v0, v1);
          *reinterpret_cast<uint32_t*>(hs + (rr + 8) * kHLd + col) = pack_half2(v2, v3);
        }
      }
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][j][e] = 0.f;
  }
}

// The k-steps of a chunk's first kvalid columns (a multiple of 8) for a warp's 32 x (8 NTW) tile. a_tile:
// the warp's first A row at the chunk's first column (AF32: float32 X, else float16), b_src: this lane's
// ldmatrix row address in the W stage.
// Straight-line per k-step: no branch between a fragment load and its MMAs.
template <int NTW, bool AF32>
__device__ __forceinline__ void mma_chunk(float (&acc)[2][kAccN][4], const void* a_tile, int a_ld, const __half* b_src,
                                          int kvalid, int lane) {
  using namespace lg;
  using AT = std::conditional_t<AF32, float, __half>;
#pragma unroll
  for (int ks = 0; ks < KC / 16; ++ks) {
    if (ks * 16 >= kvalid) break;  // K tail (uniform)
    uint32_t a[2][4], b[NTW / 2][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      load_a<AF32>(a[mi], static_cast<const AT*>(a_tile) + mi * 16 * a_ld + ks * 16, a_ld, lane);
      if (ks * 16 + 8 >= kvalid) a[mi][2] = a[mi][3] = 0u;  // columns ks*16 + 8.. lie past K
    }
#pragma unroll
    for (int jj = 0; jj < NTW / 2; ++jj) ldmatrix_x4(b[jj], b_src + jj * 16 * W_LD + ks * 16);
#pragma unroll
    for (int jj = 0; jj < NTW / 2; ++jj) {
      mma16816(acc[0][2 * jj], a[0], b[jj][0], b[jj][1]);
      mma16816(acc[1][2 * jj], a[1], b[jj][0], b[jj][1]);
      mma16816(acc[0][2 * jj + 1], a[0], b[jj][2], b[jj][3]);
      mma16816(acc[1][2 * jj + 1], a[1], b[jj][2], b[jj][3]);
    }
  }
}

template <int NTW, bool XF32>
__device__ __forceinline__ void mma_chunk_from(bool from_x, float (&acc)[2][kAccN][4], const void* a_tile, int a_ld,
                                               const __half* b_src, int kvalid, int lane) {
  if (from_x) mma_chunk<NTW, XF32>(acc, a_tile, a_ld, b_src, kvalid, lane);
  else mma_chunk<NTW, false>(acc, a_tile, a_ld, b_src, kvalid, lane);
}

// rows64's producer warp: streams every layer's K-chunks of kFmlpChunkK, in order, into
// a ring of STAGES stages guarded by full/empty mbarriers (full: 1 arrive with W's byte count + 32 noinc
// arrives of the lanes' cp.async; empty: one arrive per consumer). Chunk kc of layer l: its packed weight
// block (wblock[l] bytes at wpack + kc * wblock[l]) by one bulk copy into the stage's W area, and for layer
// 0 the chunk's X columns of this CTA's rows by 16-byte cp.async pieces (row stride x_ld elements).
// Rows past M and columns past K are not copied: their stale values meet only rows that are never stored,
// and the consumers mask the final half k-step.
template <typename XT, int STAGES>
__device__ __forceinline__ void produce_chunks(const FmlpParams& p, const FmlpLayer* sl, const int* nchunks,
                                               const uint32_t* wblock, unsigned char* ws, size_t w_stage,
                                               unsigned char* xs, size_t x_stage, int x_ld, uint64_t* full,
                                               uint64_t* empty, int64_t row0, int rows, int lane) {
  constexpr int KC = kFmlpChunkK;
  const int kx = sl[0].k;
  int layer = 0, kc = 0, total = 0;
  for (int l = 0; l < p.layers; ++l) total += nchunks[l];
  for (int c = 0; c < total; ++c) {
    const int stage = c % STAGES;
    if (c >= STAGES) mbar_wait(&empty[stage], ((c / STAGES) - 1) & 1);
    const uint32_t wbytes = wblock[layer];
    const int k0 = kc * KC;
    const uint32_t xrow = layer == 0 ? uint32_t(min(KC, kx - k0)) * sizeof(XT) : 0;
    if (lane == 0) {
      mbar_arrive_expect_tx(&full[stage], wbytes);
      bulk_copy(ws + stage * w_stage, static_cast<const unsigned char*>(sl[layer].wpack) + size_t(kc) * wbytes, wbytes,
                &full[stage]);
    }
    if (xrow) {  // 16-byte pieces, lane by lane along the rows (a bulk copy per row serializes over the lanes)
      constexpr int PPR = KC * sizeof(XT) / 16;  // pieces in a full chunk row (a power of 2)
      const int ppr = static_cast<int>(xrow / 16);
      const unsigned char* src = reinterpret_cast<const unsigned char*>(static_cast<const XT*>(p.x) + row0 * kx + k0);
      unsigned char* dst = xs + stage * x_stage;
      for (int i = lane; i < rows * PPR; i += 32) {
        const int r = i / PPR, col = i % PPR;
        if (col < ppr)
          cp_async16(dst + size_t(r) * x_ld * sizeof(XT) + col * 16, src + size_t(r) * kx * sizeof(XT) + col * 16, 16);
      }
    }
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(&full[stage])) : "memory");
    if (++kc == nchunks[layer]) {
      kc = 0;
      ++layer;
    }
  }
}

template <bool XF32>
__global__ void __launch_bounds__(lg::THREADS, 1) fmlp_large_kernel(const __grid_constant__ FmlpParams p) {
  using namespace lg;
  using XT = std::conditional_t<XF32, float, __half>;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ FmlpLayer sl[kFmlpMaxLayers];
  __shared__ int nchunks[kFmlpMaxLayers], npad[kFmlpMaxLayers];
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  if (tid < p.layers) {
    sl[tid] = p.l[tid];
    nchunks[tid] = fmlp_chunks(p.l[tid].k);
    npad[tid] = fmlp_large_padded_n(p.l[tid].n);
  }
  if (tid == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&full[s], 1 + 32);      // the producer's arrive (W's byte count) + its 32 lanes' X copies
      mbar_init(&empty[s], MMA_WARPS);  // one arrive per MMA warp
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // the inits, visible to the copy engine
  }
  __syncthreads();
  unsigned char* xs = smem;
  unsigned char* ws = smem + STAGES * x_stage(XF32);
  __half* hs = reinterpret_cast<__half*>(ws + STAGES * kWStage);
  const int64_t row0 = int64_t(blockIdx.x) * BM;
  const int rows = static_cast<int>(min(int64_t(BM), p.m - row0));
  const int layers = p.layers;
  int total = 0;
  for (int l = 0; l < layers; ++l) total += nchunks[l];

  if (warp == MMA_WARPS) {
    uint32_t wblock[kFmlpMaxLayers];
    for (int l = 0; l < layers; ++l) wblock[l] = uint32_t(npad[l]) * W_LD * 2;
    produce_chunks<XT, STAGES>(p, sl, nchunks, wblock, ws, kWStage, xs, x_stage(XF32), X_LD, full, empty, row0, rows,
                                     lane);
    return;
  }

  // MMA warps: 2 (rows) x 8 (features), each 32 rows x npad/8 features.
  const int g = lane >> 2, t = lane & 3, wm = warp >> 3, wn = warp & 7;
  const int lq = lane >> 3, lr = lane & 7;
  float acc[2][kAccN][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int j = 0; j < kAccN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mi][j][e] = 0.f;
  int layer = 0, kc = 0;
  for (int c = 0; c < total; ++c) {
    const int stage = c % STAGES;
    mbar_wait(&full[stage], (c / STAGES) & 1);
    const FmlpLayer& L = sl[layer];
    const int nw = npad[layer] / 8, ntw = nw / 8;
    const bool from_x = layer == 0;
    // Columns of this chunk: K is a multiple of 8; past it the X stage holds stale data, so a final half
    // k-step gets its upper 8 A columns zeroed.
    const int kvalid = min(KC, L.k - kc * KC);
    const void* a_tile;
    int a_ld;
    if (from_x) {
      a_tile = reinterpret_cast<const XT*>(xs + stage * x_stage(XF32)) + wm * 32 * X_LD;
      a_ld = X_LD;
    } else {
      a_tile = hs + wm * 32 * kHLd + kc * KC;
      a_ld = kHLd;
    }
    const __half* b_src = reinterpret_cast<const __half*>(ws + stage * kWStage) + (wn * nw + (lq >> 1) * 8 + lr) * W_LD +
                          (lq & 1) * 8;
    if (ntw == 4) mma_chunk_from<4, XF32>(from_x, acc, a_tile, a_ld, b_src, kvalid, lane);
    else mma_chunk_from<2, XF32>(from_x, acc, a_tile, a_ld, b_src, kvalid, lane);
    __syncwarp();
    if (lane == 0) mbar_arrive(&empty[stage]);  // this warp is done with the stage
    if (++kc == nchunks[layer]) {
      const bool last = layer == layers - 1;
      if (!last) named_barrier(1, MMA_WARPS * 32);  // every MMA warp is done reading hs for this layer
      const int r = wm * 32 + g, col0 = wn * nw + 2 * t;
      switch (L.act) {  // one straight-line epilogue per activation class (the switch is per layer, not value)
        case Activation::kNone: epilogue<XF32, 0>(acc, L, ntw, col0, r, row0, last, p, hs); break;
        case Activation::kRelu: epilogue<XF32, 1>(acc, L, ntw, col0, r, row0, last, p, hs); break;
        default: epilogue<XF32, 2>(acc, L, ntw, col0, r, row0, last, p, hs); break;
      }
      if (!last) named_barrier(1, MMA_WARPS * 32);  // this layer's activations are in hs for the next one
      kc = 0;
      ++layer;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Small M: a cluster of 8 CTAs per 16 rows; CTA `rank` computes features [rank * n/8, (rank + 1) * n/8) of
// every layer, K split over its 4 warps, partial sums reduced through shared memory.

namespace sm {
constexpr int BM = kFmlpRowsSmall, THREADS = 128, WARPS = 4;
constexpr int RED_LD = kFmlpMaxN / kFmlpCluster + 1;  // floats

struct Layout {
  size_t w_off[kFmlpMaxLayers] = {};
  int w_ld[kFmlpMaxLayers] = {};
  size_t x_off = 0, h_off = 0, red_off = 0, total = 0;
  int x_ld = 0;
};

__host__ __device__ inline Layout layout(const FmlpParams& p) {
  Layout s;
  size_t off = 0;
  for (int l = 0; l < kFmlpMaxLayers; ++l) {
    if (l >= p.layers) break;
    s.w_ld[l] = round_up(p.l[l].k, 16) + 8;
    s.w_off[l] = off;
    off += size_t(padded_n(p.l[l].n) / kFmlpCluster) * s.w_ld[l] * 2;
    off = (off + 15) / 16 * 16;
  }
  s.x_ld = round_up(p.l[0].k, 16) + 8;
  s.x_off = off;
  off += size_t(BM) * s.x_ld * 2;
  s.h_off = off;
  off += 2 * size_t(BM) * kHLd * 2;
  s.red_off = off;
  off += size_t(WARPS) * BM * RED_LD * 4;
  s.total = off;
  return s;
}
}  // namespace sm

// A warp's share of one layer in the small kernel: k-steps warp, warp + WARPS, ... of 16 rows x 8 NT features.
template <int NT>
__device__ __forceinline__ void small_layer_mma(float (&acc)[4][4], const __half* A, int a_ld, const __half* W, int w_ld,
                                                int nks, int warp, int g, int t) {
#pragma unroll 2  // the next step's fragment loads overlap this step's MMAs
  for (int ks = warp; ks < nks; ks += sm::WARPS) {
    const int kk = ks * 16 + 2 * t;
    uint32_t a[4], b[NT][2];
    a[0] = ld32(A + g * a_ld + kk);
    a[1] = ld32(A + (g + 8) * a_ld + kk);
    a[2] = ld32(A + g * a_ld + kk + 8);
    a[3] = ld32(A + (g + 8) * a_ld + kk + 8);
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const __half* wr = W + (j * 8 + g) * w_ld + kk;
      b[j][0] = ld32(wr);
      b[j][1] = ld32(wr + 8);
    }
#pragma unroll
    for (int j = 0; j < NT; ++j) mma16816(acc[j], a, b[j][0], b[j][1]);
  }
}

template <bool XF32>
__global__ void __cluster_dims__(kFmlpCluster, 1, 1) __launch_bounds__(sm::THREADS)
    fmlp_small_kernel(const __grid_constant__ FmlpParams p) {
  using namespace sm;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ FmlpLayer sl[kFmlpMaxLayers];
  __shared__ size_t woff[kFmlpMaxLayers];
  __shared__ int wld[kFmlpMaxLayers];
  __shared__ float sbias[kFmlpMaxLayers][kFmlpMaxN / kFmlpCluster];  // this CTA's bias slice of each layer
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t row0 = int64_t(blockIdx.x / kFmlpCluster) * BM;
  // Diagnostics (p.trace, null in engines): the first cluster's CTAs stamp entry and exit, its first CTA's
  // thread 0 each phase.
  const bool tracing = p.trace != nullptr && blockIdx.x < kFmlpCluster && tid == 0;
  int mark = kFmlpTraceMarks;
  auto stamp = [&] {
    if (tracing && rank == 0 && mark < kFmlpTraceSlots) p.trace[mark++] = clock64();
  };
  if (tracing) p.trace[kFmlpTraceEntry + rank] = global_ns();
  stamp();
  const Layout lay = layout(p);
  if (tid < p.layers) sl[tid] = p.l[tid];
  if (tid == 0)
    for (int l = 0; l < kFmlpMaxLayers; ++l) {
      woff[l] = lay.w_off[l];
      wld[l] = lay.w_ld[l];
    }

  // This CTA's weight slices, every layer, one cp.async group per layer (always kFmlpMaxLayers groups).
#pragma unroll
  for (int l = 0; l < kFmlpMaxLayers; ++l) {
    if (l < p.layers) {
      const FmlpLayer& L = p.l[l];
      const int nc = padded_n(L.n) / kFmlpCluster, pieces = round_up(L.k, 16) / 8;
      __half* dst = reinterpret_cast<__half*>(smem + lay.w_off[l]);
      const __half* src = static_cast<const __half*>(L.w) + size_t(rank) * nc * L.k;
      // A warp per row, a lane per 16-byte piece (no division in the address arithmetic).
      for (int r = warp; r < nc; r += WARPS) {
        const bool row_in = rank * nc + r < L.n;
        for (int pc = lane; pc < pieces; pc += 32) {
          const bool in = row_in && pc * 8 < L.k;
          cp_async16(dst + r * lay.w_ld[l] + pc * 8, in ? src + size_t(r) * L.k + pc * 8 : src, in ? 16 : 0);
        }
      }
    }
    cp_async_commit();
  }
  // The bias slices, loaded once here (stored to shared memory after X, so the loads overlap its staging):
  // read in the epilogue, each thread's global loads sat one after another between its remote stores (which
  // may alias them), an L2 round trip per value. A slice is at most kFmlpMaxN / 8 = 32 < THREADS values.
  float bias_reg[kFmlpMaxLayers];
#pragma unroll
  for (int l = 0; l < kFmlpMaxLayers; ++l)
    bias_reg[l] = l < p.layers && tid < padded_n(p.l[l].n) / kFmlpCluster
                      ? bias_at(p.l[l], rank * (padded_n(p.l[l].n) / kFmlpCluster) + tid)
                      : 0.f;
  stamp();
  // X rows as float16 (zero beyond M and K). Each lane's loads of a row, four pieces at a time, are all issued
  // before any is stored, so a row costs one global round trip rather than one per piece.
  {
    constexpr int kBatch = 4;
    const int k0 = p.l[0].k, pieces = round_up(k0, 16) / 8;
    __half* xs = reinterpret_cast<__half*>(smem + lay.x_off);
    for (int r = warp; r < BM; r += WARPS) {
      const int64_t gr = row0 + r;
      for (int pc0 = 0; pc0 < pieces; pc0 += 32 * kBatch) {
        uint4 out[kBatch];
        float4 lo[kBatch], hi[kBatch];
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
          const int c = (pc0 + lane + 32 * j) * 8;
          const bool in = gr < p.m && c < k0;
          out[j] = make_uint4(0, 0, 0, 0);
          if constexpr (XF32) {
            const float4* src = reinterpret_cast<const float4*>(static_cast<const float*>(p.x) + gr * k0 + c);
            lo[j] = in ? src[0] : make_float4(0.f, 0.f, 0.f, 0.f);
            hi[j] = in ? src[1] : make_float4(0.f, 0.f, 0.f, 0.f);
          } else if (in) {
            out[j] = *reinterpret_cast<const uint4*>(static_cast<const __half*>(p.x) + gr * k0 + c);
          }
        }
#pragma unroll
        for (int j = 0; j < kBatch; ++j) {
          const int pc = pc0 + lane + 32 * j;
          if (pc >= pieces) continue;
          if constexpr (XF32)
            out[j] = make_uint4(pack_half2(lo[j].x, lo[j].y), pack_half2(lo[j].z, lo[j].w), pack_half2(hi[j].x, hi[j].y),
                                pack_half2(hi[j].z, hi[j].w));
          *reinterpret_cast<uint4*>(xs + r * lay.x_ld + pc * 8) = out[j];
        }
      }
    }
  }
#pragma unroll
  for (int l = 0; l < kFmlpMaxLayers; ++l)
    if (tid < kFmlpMaxN / kFmlpCluster) sbias[l][tid] = bias_reg[l];
  __syncthreads();
  stamp();
  cluster.sync();  // every CTA of the cluster is running before any writes into its shared memory
  stamp();

  __half* hbuf = reinterpret_cast<__half*>(smem + lay.h_off);
  float* red = reinterpret_cast<float*>(smem + lay.red_off);
  for (int l = 0; l < p.layers; ++l) {
    switch (kFmlpMaxLayers - 1 - l) {
      case 3: cp_async_wait<3>(); break;
      case 2: cp_async_wait<2>(); break;
      case 1: cp_async_wait<1>(); break;
      default: cp_async_wait<0>(); break;
    }
    __syncthreads();
    stamp();
    const FmlpLayer& L = sl[l];
    const int nc = padded_n(L.n) / kFmlpCluster, nt = nc / 8;
    const __half* A = l == 0 ? reinterpret_cast<const __half*>(smem + lay.x_off) : hbuf + ((l - 1) & 1) * BM * kHLd;
    const int a_ld = l == 0 ? lay.x_ld : kHLd;
    const __half* W = reinterpret_cast<const __half*>(smem + woff[l]);
    const int w_ld = wld[l];
    const int nks = round_up(L.k, 16) / 16;
    float acc[4][4] = {};
    switch (nt) {  // straight-line bodies per width, as the large kernel
      case 4: small_layer_mma<4>(acc, A, a_ld, W, w_ld, nks, warp, g, t); break;
      case 3: small_layer_mma<3>(acc, A, a_ld, W, w_ld, nks, warp, g, t); break;
      case 2: small_layer_mma<2>(acc, A, a_ld, W, w_ld, nks, warp, g, t); break;
      default: small_layer_mma<1>(acc, A, a_ld, W, w_ld, nks, warp, g, t); break;
    }
    stamp();
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j < nt) {
        const int col = j * 8 + 2 * t;
        red[(warp * BM + g) * RED_LD + col] = acc[j][0];
        red[(warp * BM + g) * RED_LD + col + 1] = acc[j][1];
        red[(warp * BM + g + 8) * RED_LD + col] = acc[j][2];
        red[(warp * BM + g + 8) * RED_LD + col + 1] = acc[j][3];
      }
    }
    __syncthreads();
    stamp();
    const bool last = l == p.layers - 1;
    __half* out = hbuf + (l & 1) * BM * kHLd;
    // Rows past M are skipped: a row of the next layer's output depends on that row of its input alone, so the
    // padding rows' stale shared memory never reaches Y. Features go in pairs (nc is a multiple of 8), one
    // 4-byte store per cluster CTA.
    const int rows = static_cast<int>(min(int64_t(BM), p.m - row0));
    for (int i = tid; i < rows * nc / 2; i += THREADS) {
      const int r = 2 * i / nc, ci = 2 * i % nc, col = rank * nc + ci;
      float v0 = 0.f, v1 = 0.f;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) {
        v0 += red[(w * BM + r) * RED_LD + ci];
        v1 += red[(w * BM + r) * RED_LD + ci + 1];
      }
      v0 = activate(L.act, v0 + sbias[l][ci], L.alpha);
      v1 = activate(L.act, v1 + sbias[l][ci + 1], L.alpha);
      if (last) {
        const int64_t gr = row0 + r;
        if (col < L.n) store_y(p, gr * L.n + col, v0);
        if (col + 1 < L.n) store_y(p, gr * L.n + col + 1, v1);
      } else {
        const __half2 hv = __floats2half2_rn(v0, v1);
        __half2* dst = reinterpret_cast<__half2*>(out + r * kHLd + col);
#pragma unroll
        for (int q = 0; q < kFmlpCluster; ++q) *cluster.map_shared_rank(dst, q) = hv;
      }
    }
    stamp();
    if (!last) cluster.sync();  // this layer's activations are in every CTA; the other buffer is free
    stamp();
  }
  if (tracing) p.trace[kFmlpTraceExit + rank] = global_ns();
}

// float32 -> float16, 4 per thread where aligned.
__global__ void fmlp_cast_kernel(const float* __restrict__ x, __half* __restrict__ y, int64_t n, bool vec) {
  const int64_t n4 = vec ? n / 4 : 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    const float4 v = reinterpret_cast<const float4*>(x)[i];
    uint2 o;
    o.x = pack_half2(v.x, v.y);
    o.y = pack_half2(v.z, v.w);
    reinterpret_cast<uint2*>(y)[i] = o;
  }
  for (int64_t i = n4 * 4 + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2half_rn(x[i]);
}

int max_optin_smem() {
  static const int v = [] {
    int dev = 0, bytes = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) return 0;
    return bytes;
  }();
  return v;
}

}  // namespace

std::string fmlp_shape(const FmlpParams& p) {
  std::string s = cat("[", p.m, "x", p.l[0].k, "]");
  for (int l = 0; l < p.layers; ++l) s += cat(" -> ", p.l[l].n);
  return s;
}

size_t fmlp_small_smem(const FmlpParams& p) {
  const size_t total = sm::layout(p).total;
  // Static shared memory (layer table) is a few hundred bytes; keep 1 KB of margin under the opt-in limit.
  return total + 1024 <= static_cast<size_t>(max_optin_smem()) ? total : 0;
}

Status fmlp_prepare() {
  static const Status s = [] {
    const int limit = max_optin_smem();
    if (limit <= 0) return Status(StatusCode::kRuntimeError, "kiln.FusedMLP: cannot read the shared-memory limit");
    auto raise = [](auto kernel, int bytes, const char* what) {
      return check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), what);
    };
    const int small = limit - 1024;
    for (Status st : {raise(fmlp_large_kernel<true>, static_cast<int>(lg::smem(true)), "fused MLP rows64, float32"),
                      raise(fmlp_large_kernel<false>, static_cast<int>(lg::smem(false)), "fused MLP rows64, float16"),
                      raise(fmlp_small_kernel<true>, small, "fused MLP cluster8, float32"),
                      raise(fmlp_small_kernel<false>, small, "fused MLP cluster8, float16")})
      if (!st.is_ok()) return st;
    return fmlp_wg_prepare();
  }();
  return s;
}

Status launch_fmlp_large(const FmlpParams& p, bool x_f32, cudaStream_t stream) {
  if (p.m <= 0) return Status::ok();
  const int64_t blocks = (p.m + lg::BM - 1) / lg::BM;
  if (blocks > INT32_MAX) return Status(StatusCode::kUnsupported, cat("fused MLP rows64: ", p.m, " rows is too many"));
  const size_t smem = lg::smem(x_f32);
  if (x_f32) fmlp_large_kernel<true><<<static_cast<unsigned>(blocks), lg::THREADS, smem, stream>>>(p);
  else fmlp_large_kernel<false><<<static_cast<unsigned>(blocks), lg::THREADS, smem, stream>>>(p);
  return check_launch(cat("fused MLP rows64 ", fmlp_shape(p)));
}

Status launch_fmlp_small(const FmlpParams& p, bool x_f32, cudaStream_t stream) {
  if (p.m <= 0) return Status::ok();
  const size_t smem = fmlp_small_smem(p);
  if (smem == 0)
    return Status(StatusCode::kUnsupported,
                  cat("fused MLP cluster8 ", fmlp_shape(p), ": the weight slices need more shared memory than a block has"));
  const int64_t blocks = (p.m + sm::BM - 1) / sm::BM * kFmlpCluster;
  if (blocks > INT32_MAX) return Status(StatusCode::kUnsupported, cat("fused MLP cluster8: ", p.m, " rows is too many"));
  if (x_f32) fmlp_small_kernel<true><<<static_cast<unsigned>(blocks), sm::THREADS, smem, stream>>>(p);
  else fmlp_small_kernel<false><<<static_cast<unsigned>(blocks), sm::THREADS, smem, stream>>>(p);
  return check_launch(cat("fused MLP cluster8 ", fmlp_shape(p)));
}

Status launch_fmlp_cast_f16(const float* x, void* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return Status::ok();
  fmlp_cast_kernel<<<grid_for((n + 3) / 4, 256, 132 * 8), 256, 0, stream>>>(
      x, static_cast<__half*>(y), n, reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 8 == 0);
  return check_launch(cat("fused MLP input cast float32->float16 (", n, " elements)"));
}

}  // namespace kiln::cuda
