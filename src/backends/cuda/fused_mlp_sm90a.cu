// kiln.FusedMLP, large M on Hopper ("wg64"): the rows64 design (fused_mlp.cu) on warpgroup MMA. Compiled for
// sm_90a only (wgmma has no portable form); fmlp_wg_available() says whether this GPU runs it.
//
// A CTA owns 64 rows end to end (wgmma's M): one consumer warpgroup (warps 0-3, warp w rows 16w..16w+15)
// and a producer thread (warp 4) that streams K-chunks of 64 through a 4-stage ring of full/empty mbarriers:
// each chunk's packed weight block by one bulk copy (fused_mlp.h: the K-major core-matrix image wgmma reads
// through a descriptor), and for layer 0 the chunk's X columns by the tensor copy engine (a 2-D tensor map of
// X encoded at launch, 128-byte swizzled boxes, zeros past M and K), so that loading costs the consumers
// nothing and each ring step moves one large block (bench_l2_ingest: an SM's ring steps cost a fixed
// ~0.35 us whatever their size, and one warp issuing cp.async for X took in only ~23 GB/s).
//  - Layer 0: the consumers form the A fragments from the X stage (float32 converted to float16 here), then
//    issue one wgmma.m64nNPk16 per k-step, N = the layer's padded width (16..256, all features at once).
//    Each chunk's group is retired (wgmma.wait_group 0) before the stage is released and the next chunk's
//    fragments are formed.
//  - Bias + activation in registers; a hidden layer's float32 accumulators become the next layer's float16 A
//    fragments directly (wgmma's accumulator layout for columns 16j..16j+15 is the A layout of k-step j),
//    so hidden activations never leave registers. The last layer writes Y.
// Against rows64 (mma.sync, 16 warps, every fragment through ldmatrix/lds): per k-step the tensor cores read
// B once per warpgroup instead of once per warp, and A is read from shared memory once.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_fp16.h>

#include <mutex>
#include <type_traits>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/fused_mlp.h"
#include "backends/cuda/fused_mlp_device.cuh"

namespace kiln::cuda {
namespace {

using namespace fmlp;

namespace wg {
constexpr int BM = kFmlpRowsLarge, KC = kFmlpChunkK, KSTEPS = KC / 16, STAGES = 4;
// Two consumer warpgroups on the same 64 rows, each computing half of every layer's features (wgmma N =
// NP / 2), so that one's serial per-chunk work (wait, fragments, retire, release) overlaps the other's MMAs;
// they swap hidden activations through shared memory (kXchgBytes) between layers.
// The producer is a third warpgroup (one thread works) so that setmaxnreg can move its registers to the
// consumers (65536 / 384 threads would leave each 168; the consumers need ~200).
constexpr int CONSUMER_WARPS = 8, CONSUMERS = CONSUMER_WARPS * 32, THREADS = CONSUMERS + 128;
constexpr int kProducerRegs = 40, kConsumerRegs = 232;
// X arrives by the tensor copy engine in boxes of 64 rows x 128 bytes (32 float32 or 64 float16 columns),
// 128-byte swizzled: 16-byte unit u of row r sits at unit u ^ (r % 8), so the fragment loads of 8 rows
// fall in distinct banks. A chunk's X is 2 boxes (float32) or 1 (float16).
constexpr int kBoxBytes = BM * 128;
constexpr int x_boxes(bool f32) { return f32 ? 2 : 1; }
constexpr size_t kWStage = size_t(kFmlpMaxN) * KC * 2;
constexpr size_t x_stage(bool f32) { return size_t(x_boxes(f32)) * kBoxBytes; }
// + 1024: the stages start at the first 1024-byte boundary (the swizzle pattern repeats every 1024 bytes).
// A hidden layer's activations as the next layer's wgmma A operand: 64 rows x up to 256 features, K-major
// no-swizzle core matrices (8 rows x 8 features, 128 bytes), [feature group][row group].
constexpr size_t kXchgBytes = size_t(kFmlpMaxN / 8) * 1024;
constexpr size_t smem(bool f32) { return STAGES * (kWStage + x_stage(f32)) + kXchgBytes + 1024; }
}  // namespace wg

constexpr int kWgAccMax = kFmlpMaxN / 2;  // float32 accumulators per thread at N = 256
#include "backends/cuda/wgmma_f16.inc"

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Register fences for the compiler: a value is (re)defined here. After a wait, the accumulators (the wgmmas
// write them until then); before wgmma.fence, the A fragments and zeroed accumulators (otherwise their
// definitions may be scheduled after the fence, inside the wgmma pipeline stage, which makes ptxas
// serialize every wgmma).
template <int NA>
__device__ __forceinline__ void fence_acc(float (&d)[kWgAccMax]) {
#pragma unroll
  for (int i = 0; i < NA; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void fence_frag(uint32_t (&a)[4]) {
  asm volatile("" : "+r"(a[0]), "+r"(a[1]), "+r"(a[2]), "+r"(a[3])::"memory");
}

// wgmma's B descriptor for k-step ks (0..3) of a W stage holding an NP x 64 block: no swizzle, K-major;
// core matrices (8 features x 8 k, 128 contiguous bytes) 128 bytes apart along N (stride byte offset), and
// K-groups NP * 16 bytes apart (leading byte offset).
template <int NP>
__device__ __forceinline__ uint64_t b_desc(const unsigned char* wstage, int ks, int half) {
  constexpr uint32_t kLbo = NP * 16, kSbo = 128;
  const uint32_t addr = smem_u32(wstage) + ks * 2 * kLbo + half * (NP / 2) * 16;  // the half's feature groups
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(kLbo >> 4) << 16) | (uint64_t(kSbo >> 4) << 32);
}

struct Ring {
  unsigned char* ws;  // STAGES W areas of kWStage bytes
  unsigned char* xs;  // STAGES X areas
  unsigned char* act; // a hidden layer's output, the next layer's A operand (K-major core matrices)
  int half;           // this warpgroup: features [half * NP/2, (half + 1) * NP/2) of every layer
  uint64_t* full;
  uint64_t* empty;
  int base;  // ring index of the current layer's first chunk
};

__device__ __forceinline__ void wait_full(const Ring& r, int c) {
  mbar_wait(&r.full[c % wg::STAGES], (c / wg::STAGES) & 1);
}
__device__ __forceinline__ void release(const Ring& r, int c, int lane) {
  __syncwarp();
  if (lane == 0) mbar_arrive(&r.empty[c % wg::STAGES]);
}

// The A fragment of k-step ks for rows row0..row0+15 from a chunk's swizzled X boxes (wg::kBoxBytes
// above): float32 as four 8-byte loads (rows g, g+8; columns 2t, 2t+8) and conversions, float16 by ldmatrix
// (lane 8q + i gives row i + 8 (q & 1), columns 8 (q >> 1)..).
template <bool F32>
__device__ __forceinline__ void load_a_swizzled(uint32_t (&a)[4], const unsigned char* xstage, int row0, int ks, int lane) {
  auto at = [&](int row, int byte) {  // byte offset of a row's byte in the box holding it
    return xstage + (byte >> 7) * wg::kBoxBytes + row * 128 + ((((byte >> 4) & 7) ^ (row & 7)) << 4) + (byte & 15);
  };
  if constexpr (F32) {
    const int g = lane >> 2, t = lane & 3, r0 = row0 + g, r1 = r0 + 8, b0 = (ks * 16 + 2 * t) * 4, b1 = b0 + 32;
    const float2 v0 = *reinterpret_cast<const float2*>(at(r0, b0)), v1 = *reinterpret_cast<const float2*>(at(r1, b0));
    const float2 v2 = *reinterpret_cast<const float2*>(at(r0, b1)), v3 = *reinterpret_cast<const float2*>(at(r1, b1));
    a[0] = pack_half2(v0.x, v0.y);
    a[1] = pack_half2(v1.x, v1.y);
    a[2] = pack_half2(v2.x, v2.y);
    a[3] = pack_half2(v3.x, v3.y);
  } else {
    const int q = lane >> 3, row = row0 + (lane & 7) + (q & 1) * 8;
    ldmatrix_x4(a, reinterpret_cast<const __half*>(at(row, (ks * 16 + (q >> 1) * 8) * 2)));
  }
}

// One layer-0 chunk (ring index c, kvalid of its 64 columns inside K): A fragments from the X stage, then
// the chunk's wgmmas as one group.
template <int NP, bool XF32>
__device__ __forceinline__ void chunk_from_x(float (&acc)[kWgAccMax], uint32_t (&a)[wg::KSTEPS][4], const Ring& r,
                                             int c, int kvalid, int warp, int lane) {
  using namespace wg;
  using XT = std::conditional_t<XF32, float, __half>;
  wait_full(r, c);
  const int stage = c % STAGES;
  const unsigned char* xstage = r.xs + stage * x_stage(XF32);
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ++ks) {
    load_a_swizzled<XF32>(a[ks], xstage, (warp & 3) * 16, ks, lane);
    // Columns past K hold stale stage data: zero them (the packed block is zero there too). Every k-step is
    // issued, so that no wgmma sits on a branch (ptxas serializes those).
    if (ks * 16 >= kvalid) a[ks][0] = a[ks][1] = 0u;
    if (ks * 16 + 8 >= kvalid) a[ks][2] = a[ks][3] = 0u;
    fence_frag(a[ks]);
  }
  wg_fence();
#pragma unroll
  for (int ks = 0; ks < KSTEPS; ++ks) wgmma_rs<NP / 2>(acc, a[ks], b_desc<NP>(r.ws + stage * kWStage, ks, r.half));
  wg_commit();
}

template <int NP, bool XF32>
__device__ __forceinline__ void layer_from_x(float (&acc)[kWgAccMax], const Ring& r, int k, int warp, int lane) {
  using namespace wg;
  // One fragment buffer, each chunk's group retired before the next chunk's fragments are formed: with two
  // buffers (forming chunk c+1's while chunk c's group runs), ptxas serializes every wgmma (C7513: non-wgmma
  // instructions defining wgmma inputs inside a pipeline stage).
  uint32_t a[KSTEPS][4];
  const int nch = fmlp_chunks(k);
  for (int c = 0; c < nch; ++c) {
    chunk_from_x<NP, XF32>(acc, a, r, r.base + c, min(KC, k - c * KC), warp, lane);
    wg_wait<0>();
    release(r, r.base + c, lane);
  }
  fence_acc<NP / 4>(acc);
}

// Layers after the first: A is the previous layer's activations in shared memory (r.act).
__device__ __forceinline__ uint64_t a_desc(const unsigned char* act, int ks) {
  constexpr uint32_t kLbo = 1024, kSbo = 128;  // K-direction core matrices 1024 bytes apart, row groups 128
  const uint32_t addr = smem_u32(act) + ks * 2 * kLbo;
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(kLbo >> 4) << 16) | (uint64_t(kSbo >> 4) << 32);
}

template <int NP>
__device__ __forceinline__ void layer_from_shared(float (&acc)[kWgAccMax], const Ring& r, int k, int lane) {
  using namespace wg;
  const int nch = fmlp_chunks(k);
#pragma unroll
  for (int c = 0; c < kFmlpMaxN / KC; ++c) {
    if (c < nch) {
      const int rc = r.base + c, stage = rc % STAGES;
      wait_full(r, rc);
      wg_fence();
      // Whole chunks: activations past the previous layer's padded width are zero (to_shared), as is the
      // packed block past K.
#pragma unroll
      for (int s = 0; s < KSTEPS; ++s)
        wgmma_ss<NP / 2>(acc, a_desc(r.act, c * KSTEPS + s), b_desc<NP>(r.ws + stage * kWStage, s, r.half));
      wg_commit();
      wg_wait<1>();
      if (c > 0) release(r, rc - 1, lane);
    }
  }
  wg_wait<0>();
  release(r, r.base + nch - 1, lane);
  fence_acc<NP / 4>(acc);
}

// Bias + activation; the result into r.act as the next layer's A operand. Each warpgroup writes its n8
// tiles (features half * NP/2 ..); warpgroup 0 also zeroes the feature groups up to the next 64 (the next
// layer's last chunk reads them). Barriers: before (the other warpgroup may still be reading this layer's
// A) and after (the writes, made visible to wgmma's async proxy).
template <int NP, int ACT>
__device__ __forceinline__ void to_shared(const float (&acc)[kWgAccMax], const FmlpLayer& L, const Ring& r, int warp,
                                          int lane) {
  constexpr int kTiles = NP / 16;  // this half's n8 tiles
  const int g = lane >> 2, t = lane & 3, rg = (warp & 3) * 2;
  named_barrier(2, wg::CONSUMERS);
  auto put = [&](int tile, int rgroup, uint32_t v) {
    *reinterpret_cast<uint32_t*>(r.act + tile * 1024 + rgroup * 128 + g * 16 + t * 4) = v;
  };
#pragma unroll
  for (int jt = 0; jt < kTiles; ++jt) {
    const int tile = r.half * kTiles + jt, col = 8 * tile + 2 * t;
    const float b0 = bias_at(L, col), b1 = bias_at(L, col + 1);
    const float* d = acc + 4 * jt;
    put(tile, rg, pack_half2(epilogue_act<ACT>(L, d[0] + b0), epilogue_act<ACT>(L, d[1] + b1)));
    put(tile, rg + 1, pack_half2(epilogue_act<ACT>(L, d[2] + b0), epilogue_act<ACT>(L, d[3] + b1)));
  }
  constexpr int kPadTiles = (NP + wg::KC - 1) / wg::KC * (wg::KC / 8);
  if (r.half == 0) {
#pragma unroll
    for (int tile = NP / 8; tile < kPadTiles; ++tile) {
      put(tile, rg, 0u);
      put(tile, rg + 1, 0u);
    }
  }
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  named_barrier(2, wg::CONSUMERS);
}

// Bias + activation of the last layer into Y (its first L.n features, rows below M).
template <int NP, int ACT, bool XF32>
__device__ __forceinline__ void store_output(const float (&acc)[kWgAccMax], const FmlpLayer& L, const FmlpParams& p,
                                             int64_t row0, int warp, int g, int t, int half) {
  const int64_t r0 = row0 + (warp & 3) * 16 + g, r1 = r0 + 8;
  const int n = L.n;
#pragma unroll
  for (int jt = 0; jt < NP / 16; ++jt) {  // this half's n8 tiles
    const int col = 8 * (half * (NP / 16) + jt) + 2 * t;
    const float b0 = bias_at(L, col), b1 = bias_at(L, col + 1);
    const float* d = acc + 4 * jt;
    if (r0 < p.m && col < n) store_y(p, r0 * n + col, epilogue_act<ACT>(L, d[0] + b0));
    if (r0 < p.m && col + 1 < n) store_y(p, r0 * n + col + 1, epilogue_act<ACT>(L, d[1] + b1));
    if (r1 < p.m && col < n) store_y(p, r1 * n + col, epilogue_act<ACT>(L, d[2] + b0));
    if (r1 < p.m && col + 1 < n) store_y(p, r1 * n + col + 1, epilogue_act<ACT>(L, d[3] + b1));
  }
}

template <int NP, bool XF32>
__device__ __forceinline__ void run_layer(bool first, bool last, float (&acc)[kWgAccMax], const Ring& r,
                                          const FmlpLayer& L, const FmlpParams& p, int64_t row0, int warp, int lane) {
#pragma unroll
  for (int i = 0; i < NP / 4; ++i) acc[i] = 0.f;
  fence_acc<NP / 4>(acc);
  if (first) layer_from_x<NP, XF32>(acc, r, L.k, warp, lane);
  else layer_from_shared<NP>(acc, r, L.k, lane);
  const int g = lane >> 2, t = lane & 3;
  switch (act_class(L.act) + (last ? 3 : 0)) {
    case 0: to_shared<NP, 0>(acc, L, r, warp, lane); break;
    case 1: to_shared<NP, 1>(acc, L, r, warp, lane); break;
    case 2: to_shared<NP, 2>(acc, L, r, warp, lane); break;
    case 3: store_output<NP, 0, XF32>(acc, L, p, row0, warp, g, t, r.half); break;
    case 4: store_output<NP, 1, XF32>(acc, L, p, row0, warp, g, t, r.half); break;
    default: store_output<NP, 2, XF32>(acc, L, p, row0, warp, g, t, r.half); break;
  }
}

// The tensor copy of one X box (columns col.., rows row..; zero-filled past K and M) into dst.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int col, int row, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(col), "r"(row), "r"(smem_u32(bar))
      : "memory");
}

template <bool XF32>
__global__ void __launch_bounds__(wg::THREADS, 1)
    fmlp_wg_kernel(const __grid_constant__ FmlpParams p, const __grid_constant__ CUtensorMap xmap) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace wg;
  using XT = std::conditional_t<XF32, float, __half>;
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ FmlpLayer sl[kFmlpMaxLayers];
  __shared__ int nchunks[kFmlpMaxLayers], npad[kFmlpMaxLayers];
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  // The warp index through a shuffle: provably warp-uniform, so that ptxas sees no divergence around the
  // wgmmas (layer shapes below come from the kernel parameters for the same reason).
  const int tid = threadIdx.x, warp = __shfl_sync(0xffffffffu, tid >> 5, 0), lane = tid & 31;
  if (tid < p.layers) {
    sl[tid] = p.l[tid];
    nchunks[tid] = fmlp_chunks(p.l[tid].k);
    npad[tid] = fmlp_wg_padded_n(p.l[tid].n);
  }
  if (tid == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&full[s], 1);                // the producer's arrive with the stage's byte count
      mbar_init(&empty[s], CONSUMER_WARPS);  // one arrive per consumer warp
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // the inits, visible to the copy engine
  }
  __syncthreads();
  unsigned char* stages = smem + ((1024 - (smem_u32(smem) & 1023)) & 1023);
  Ring r{stages, stages + STAGES * kWStage,
         stages + STAGES * (kWStage + x_stage(XF32)), warp / 4, full, empty, 0};
  const int64_t row0 = int64_t(blockIdx.x) * BM;

  if (warp >= CONSUMER_WARPS) {
    // Producer (warp CONSUMER_WARPS, lane 0; the rest of its warpgroup idles):
    // per chunk, the packed weight block (one bulk copy) and for layer 0 X's boxes (tensor copies).
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    if (warp == CONSUMER_WARPS && lane == 0) {
      int layer = 0, kc = 0, total = 0;
      for (int l = 0; l < p.layers; ++l) total += nchunks[l];
      for (int c = 0; c < total; ++c) {
        const int stage = c % STAGES;
        if (c >= STAGES) mbar_wait(&empty[stage], ((c / STAGES) - 1) & 1);
        const uint32_t wbytes = uint32_t(npad[layer]) * KC * 2;
        mbar_arrive_expect_tx(&full[stage], wbytes + (layer == 0 ? uint32_t(x_stage(XF32)) : 0u));
        bulk_copy(r.ws + stage * kWStage, static_cast<const unsigned char*>(sl[layer].wpack) + size_t(kc) * wbytes, wbytes,
                  &full[stage]);
        if (layer == 0)
          for (int b = 0; b < x_boxes(XF32); ++b)
            tma_load_2d(r.xs + stage * x_stage(XF32) + b * kBoxBytes, &xmap, kc * KC + b * (128 / int(sizeof(XT))),
                        static_cast<int>(row0), &full[stage]);
        if (++kc == nchunks[layer]) {
          kc = 0;
          ++layer;
        }
      }
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
    float acc[kWgAccMax];
    for (int l = 0; l < p.layers; ++l) {
      const FmlpLayer& L = p.l[l];
      const bool first = l == 0, last = l == p.layers - 1;
      switch (fmlp_wg_padded_n(L.n)) {
        case 16: run_layer<16, XF32>(first, last, acc, r, L, p, row0, warp, lane); break;
        case 32: run_layer<32, XF32>(first, last, acc, r, L, p, row0, warp, lane); break;
        case 64: run_layer<64, XF32>(first, last, acc, r, L, p, row0, warp, lane); break;
        case 128: run_layer<128, XF32>(first, last, acc, r, L, p, row0, warp, lane); break;
        default: run_layer<256, XF32>(first, last, acc, r, L, p, row0, warp, lane); break;
      }
      r.base += fmlp_chunks(L.k);
    }
  }
#else
  __trap();  // built for sm_90a only (CMake); never launched elsewhere (fmlp_wg_available)
#endif
}

}  // namespace

bool fmlp_wg_available() {
  static const bool v = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
    return major == 9 && minor == 0;
  }();
  return v;
}

Status fmlp_wg_prepare() {
  static const Status s = [] {
    if (!fmlp_wg_available()) return Status::ok();
    for (auto [kernel, bytes, what] : {std::tuple{&fmlp_wg_kernel<true>, wg::smem(true), "fused MLP wg64, float32"},
                                       std::tuple{&fmlp_wg_kernel<false>, wg::smem(false), "fused MLP wg64, float16"}}) {
      Status st = check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                        what);
      if (!st.is_ok()) return st;
    }
    return Status::ok();
  }();
  return s;
}

namespace {

// cuTensorMapEncodeTiled through the runtime's driver entry point (no link against libcuda).
Result<PFN_cuTensorMapEncodeTiled_v12000> tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static cudaError_t err = cudaSuccess;
  static std::once_flag once;
  std::call_once(once, [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q);
    if (err == cudaSuccess && q == cudaDriverEntryPointSuccess) fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  });
  if (!fn)
    return Status(StatusCode::kRuntimeError, cat("fused MLP wg64: the driver has no cuTensorMapEncodeTiled (",
                                                 cudaGetErrorString(err), ")"));
  return fn;
}

// X [m, k] (row-major, 16-byte aligned, k a multiple of 8) as 64-row x 128-byte boxes, 128-byte swizzle,
// zeros past the edges.
Result<CUtensorMap> x_tensor_map(const FmlpParams& p, bool x_f32) {
  auto encode = tensor_map_encoder();
  if (!encode.is_ok()) return encode.status();
  const cuuint32_t es = x_f32 ? 4 : 2;
  const cuuint64_t dims[2] = {cuuint64_t(p.l[0].k), cuuint64_t(p.m)};
  const cuuint64_t strides[1] = {cuuint64_t(p.l[0].k) * es};
  const cuuint32_t box[2] = {128 / es, cuuint32_t(wg::BM)};
  const cuuint32_t estrides[2] = {1, 1};
  CUtensorMap map;
  const CUresult r = (*encode)(&map, x_f32 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2,
                               const_cast<void*>(p.x), dims, strides, box, estrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::kRuntimeError,
                  cat("fused MLP wg64 ", fmlp_shape(p), ": cuTensorMapEncodeTiled for X failed (CUresult ", int(r), ")"));
  return map;
}

}  // namespace

Status launch_fmlp_wg(const FmlpParams& p, bool x_f32, cudaStream_t stream) {
  if (p.m <= 0) return Status::ok();
  if (!fmlp_wg_available())
    return Status(StatusCode::kUnsupported, "fused MLP wg64 runs on sm_90 GPUs (H100/H200) only; this one is not");
  const int64_t blocks = (p.m + wg::BM - 1) / wg::BM;
  if (blocks > INT32_MAX) return Status(StatusCode::kUnsupported, cat("fused MLP wg64: ", p.m, " rows is too many"));
  auto xmap = x_tensor_map(p, x_f32);
  if (!xmap.is_ok()) return xmap.status();
  const size_t smem = wg::smem(x_f32);
  if (x_f32) fmlp_wg_kernel<true><<<static_cast<unsigned>(blocks), wg::THREADS, smem, stream>>>(p, *xmap);
  else fmlp_wg_kernel<false><<<static_cast<unsigned>(blocks), wg::THREADS, smem, stream>>>(p, *xmap);
  return check_launch(cat("fused MLP wg64 ", fmlp_shape(p)));
}

}  // namespace kiln::cuda
