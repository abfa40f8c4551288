// The low-latency mode's resident kernel (see resident_mlp.h for the host side and docs/low_latency.md).
// One thread-block cluster of 8 or 16 CTAs stays on the GPU: at start every CTA copies its slice of
// each layer's weights (ceil(n/ctas) output columns, all k) into shared memory; then, per request, CTA 0
// polls the request's LL words in mapped host memory and sends the request and the input to every CTA
// through distributed shared memory (st.async, counted by each CTA's mbarrier: no cluster barrier), the
// layers run in FP32 FMA (each CTA computes its columns and sends them to every CTA's next activation
// buffer, counted by that layer's mbarrier), and the last layer's columns go straight to the mapped output
// as LL words (or to device memory, followed by a per-CTA done sequence number).
//
// Shared memory of one CTA (offsets from the host, all 16-byte aligned):
//   per layer: weights [cols_per_cta][k_pad] (float or half), bias [cols_per_cta] float
//   input      [max_rows][k_pad0] float      (sent by CTA 0)
//   act[0..1]  [max_rows][act_stride] float  (layer l > 0 reads act[(l-1)%2], layer l < last writes act[l%2])
// Why two activation buffers suffice without a barrier: a CTA sends layer l+2's columns only after it has
// every CTA's layer l+1 columns, and every warp that reads act[l%2] for layer l+1 sends its own layer l+1
// columns only after those reads.
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/resident_mlp_kernel.h"

namespace kiln::cuda::resident {
namespace {

namespace cg = cooperative_groups;

__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
// Volatile (strong, system scope) loads for everything the host or another request rewrites: a weak .cv
// load of mapped memory kept returning a cached line (measured: the poll never saw the next request).
__device__ __forceinline__ uint4 load_volatile_16(const void* p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
// The request-line poll: an acquire at system scope, so the input the host wrote before the line (read by
// this CTA after a barrier) is the current request's.
__device__ __forceinline__ uint4 load_acquire_16(const void* p) {
  uint4 v;
  asm volatile("ld.acquire.sys.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p)
               : "memory");
  return v;
}
__device__ __forceinline__ uint32_t load_volatile_32(const void* p) {
  uint32_t v;
  asm volatile("ld.volatile.global.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ unsigned short load_volatile_16bit(const void* p) {
  unsigned short v;
  asm volatile("ld.volatile.global.u16 %0, [%1];" : "=h"(v) : "l"(p));
  return v;
}

// Distributed shared memory through the async proxy: a CTA's shared address, the same offset in CTA `rank`,
// a 4- or 16-byte store there that counts its bytes on that CTA's mbarrier, and the mbarrier operations.
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ uint32_t cluster_addr(uint32_t local, int rank) {
  uint32_t r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(local), "r"(rank));
  return r;
}
__device__ __forceinline__ void send_b32(uint32_t remote, uint32_t v, uint32_t remote_bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];" ::"r"(remote), "r"(v),
               "r"(remote_bar)
               : "memory");
}
__device__ __forceinline__ void send_v4(uint32_t remote, const uint4& v, uint32_t remote_bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, [%5];" ::"r"(remote),
               "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "r"(remote_bar)
               : "memory");
}
__device__ __forceinline__ void bar_init(uint64_t* bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bar)) : "memory");
}
// The single arrival of a phase, with the bytes the phase waits for (which may already have arrived).
__device__ __forceinline__ void bar_arm_local(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bar_arm_remote(uint32_t remote_bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cluster.shared::cluster.b64 _, [%0], %1;" ::"r"(remote_bar), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void bar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_PHASE:\n"
      "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_PHASE;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
// One LL output word {payload, seq} into mapped host memory (8 bytes, one store: the host never sees half),
// written through the L2 to system memory (.wt): a plain store to mapped memory may wait in the L2 until a
// fence or the kernel's end.
__device__ __forceinline__ void store_ll(void* p, uint32_t payload, uint32_t seq) {
  asm volatile("st.global.wt.v2.u32 [%0], {%1, %2};" ::"l"(p), "r"(payload), "r"(seq) : "memory");
}

__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ float half_bits_to_float(unsigned short h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float round_to_half(float x) { return __half2float(__float2half_rn(x)); }

__device__ __forceinline__ float activate(float x, int act, float alpha) {
  switch (act) {
    case kActRelu: return fmaxf(x, 0.f);
    case kActLeakyRelu: return x >= 0.f ? x : alpha * x;
    case kActSigmoid: return 1.f / (1.f + expf(-x));
    case kActTanh: return tanhf(x);
    default: return x;
  }
}

__device__ __forceinline__ float load1(const float* w) { return *w; }
__device__ __forceinline__ float load1(const __half* w) { return __half2float(*w); }

// Columns [col0, col0 + cols) of the layer's [n, k] weights into shared memory, rows padded to k_pad with
// zeros; S is the weight's storage type (its bits are copied: uint32_t for float, uint16_t for half).
template <class S>
__device__ void stage_weights(const LayerParams& L, unsigned char* smem, int col0, int cols) {
  const S* src = static_cast<const S*>(L.weight);
  S* dst = reinterpret_cast<S*>(smem + L.weight_offset);
  for (int i = threadIdx.x; i < L.cols_per_cta * L.k_pad; i += blockDim.x) {
    const int c = i / L.k_pad, k = i - c * L.k_pad;
    dst[i] = (c < cols && k < L.k) ? src[static_cast<int64_t>(col0 + c) * L.k + k] : S(0);
  }
  float* bias = reinterpret_cast<float*>(smem + L.bias_offset);
  for (int c = threadIdx.x; c < L.cols_per_cta; c += blockDim.x) {
    float b = 0.f;
    if (L.bias && c < cols)
      b = L.bias_half ? __half2float(static_cast<const __half*>(L.bias)[col0 + c])
                      : static_cast<const float*>(L.bias)[col0 + c];
    bias[c] = L.beta * b;
  }
}

// Where CTA 0 sends the input: element e of the request ([rows, k0] row-major) goes to row e / k0 of every
// CTA's input buffer, counted by that CTA's request mbarrier.
struct InputSink {
  uint32_t buffer;  // this CTA's input buffer (shared address; the same offset in every CTA)
  uint32_t bar;     // the request mbarrier (same)
  int k0, stride, ctas;
  bool round_half;  // a Cast float32 -> float16 follows the input: round like the engine does
  __device__ uint32_t at(int e) const {
    const int row = e < k0 ? 0 : e / k0, k = e - row * k0;  // batch 1: no division on the input's path
    return buffer + static_cast<uint32_t>(row * stride + k) * 4u;
  }
  __device__ float rounded(float v) const { return round_half ? round_to_half(v) : v; }
  __device__ void send(int e, float v) const {
    const uint32_t a = at(e), bits = __float_as_uint(rounded(v));
    for (int d = 0; d < ctas; ++d) send_b32(cluster_addr(a, d), bits, cluster_addr(bar, d));
  }
  // Elements e..e+3 of one row (e and k0 multiples of 4: 16-byte aligned in every row).
  __device__ void send4(int e, float4 v) const {
    const uint4 b = make_uint4(__float_as_uint(rounded(v.x)), __float_as_uint(rounded(v.y)), __float_as_uint(rounded(v.z)),
                               __float_as_uint(rounded(v.w)));
    const uint32_t a = at(e);
    for (int d = 0; d < ctas; ++d) send_v4(cluster_addr(a, d), b, cluster_addr(bar, d));
  }
};

// 4 consecutive weights as floats (16 bytes of float, 8 of half; aligned).
__device__ __forceinline__ void load4(const float* w, float* out) {
  const float4 a = *reinterpret_cast<const float4*>(w);
  out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
}
__device__ __forceinline__ void load4(const __half* w, float* out) {
  const uint2 raw = *reinterpret_cast<const uint2*>(w);
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
  out[0] = a.x; out[1] = a.y; out[2] = b.x; out[3] = b.y;
}
__device__ __forceinline__ float dot4(const float* w, const float4& x, float acc) {
  acc = fmaf(w[0], x.x, acc);
  acc = fmaf(w[1], x.y, acc);
  acc = fmaf(w[2], x.z, acc);
  return fmaf(w[3], x.w, acc);
}

// One dense layer for this CTA's columns: warp w computes columns w and w + warps together (then w +
// 2 warps, ...), so that each input chunk it loads serves two columns; lanes split k in 4-element chunks
// (lane l reads elements 4l.. of every 128: consecutive 16-byte (float) or 8-byte (half) shared loads, no
// bank conflicts) for up to 4 rows at a time, then a butterfly reduction. The layers are bound by shared-
// memory bandwidth (every weight and, per column pair, the input row are read once per request). Non-last
// layers push each result into every CTA's next buffer (lane d stores to CTA d); the last layer writes
// `output` (the mapped buffer or device memory). Returns whether this thread wrote it.
// Where a layer's results go: the next layer's buffer in every CTA (counted by that layer's mbarrier), or for
// the last layer the output: LL words in mapped memory (seq) or plain values in device memory.
struct LayerSink {
  uint32_t next = 0, bar = 0;  // shared addresses in this CTA (the same offsets in every CTA)
  int stride = 0;              // row stride of next, floats
  void* output = nullptr;      // last layer
  bool output_ll = false;
  uint32_t seq = 0;
};

// This CTA's columns of a layer: [n * rank / ctas, n * (rank + 1) / ctas). Computed once at start (ColumnRange
// in shared memory): a 64-bit division is a long software routine here, and four per layer per request took
// ~0.6 µs of every batch-1 request (GPU run 23: layers 4.08 -> 3.44 µs, end to end 10.2-10.4 -> 9.0-9.5 µs).
struct ColumnRange {
  int first, count;
};
__device__ __forceinline__ ColumnRange column_range(int n, int rank, int ctas) {
  const int first = static_cast<int>(static_cast<int64_t>(n) * rank / ctas);
  return {first, static_cast<int>(static_cast<int64_t>(n) * (rank + 1) / ctas) - first};
}

template <class W>
__device__ bool dense_layer(const KernelParams& p, const LayerParams& L, unsigned char* smem, const float* x,
                            int x_stride, const LayerSink& sink, bool last, int rows, ColumnRange range, int ctas,
                            uint64_t* warp_cycles) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int col0 = range.first, cols = range.count;
  const W* wbase = reinterpret_cast<const W*>(smem + L.weight_offset);
  const float* bias = reinterpret_cast<const float*>(smem + L.bias_offset);
  const int k4 = L.k & ~3;
  bool wrote = false;
  for (int c = warp; c < cols; c += 2 * warps) {
    const int cb = c + warps;
    const bool two = cb < cols;  // uniform across the warp
    const W* wa = wbase + c * L.k_pad;
    const W* wb = wbase + (two ? cb : c) * L.k_pad;
    for (int r0 = 0; r0 < rows; r0 += 4) {
      const uint64_t c0 = warp_cycles ? clock64() : 0;
      float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
      for (int k = lane * 4; k < k4; k += 128) {
        float va[4], vb[4];
        load4(wa + k, va);
        if (two) load4(wb + k, vb);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (r0 + j >= rows) break;
          const float4 a = *reinterpret_cast<const float4*>(x + (r0 + j) * x_stride + k);
          acc[0][j] = dot4(va, a, acc[0][j]);
          if (two) acc[1][j] = dot4(vb, a, acc[1][j]);
        }
      }
      for (int k = k4 + lane; k < L.k; k += 32) {
        const float wka = load1(wa + k), wkb = load1(wb + k);
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (r0 + j < rows) {
            const float xv = x[(r0 + j) * x_stride + k];
            acc[0][j] = fmaf(wka, xv, acc[0][j]);
            acc[1][j] = fmaf(wkb, xv, acc[1][j]);
          }
      }
      const uint64_t c1 = warp_cycles ? clock64() : 0;
      // Both columns in one butterfly: the first step leaves column c's partial sums in lanes 0-15 and cb's
      // in lanes 16-31, four more give each half its column's total (5 shuffles for two columns, not 10).
      // A single column keeps the whole warp on it. Lanes h*16 + d then send to CTA d.
      const int h = two && (lane & 16) ? 1 : 0;
      const int cc = h ? cb : c, n = col0 + cc, sender = lane & 15;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (r0 + j >= rows) break;  // uniform across the warp
        float s;
        if (two) {
          const float keep = h ? acc[1][j] : acc[0][j], give = h ? acc[0][j] : acc[1][j];
          s = keep + __shfl_xor_sync(0xffffffffu, give, 16);
        } else {
          s = acc[0][j] + __shfl_xor_sync(0xffffffffu, acc[0][j], 16);
        }
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        float v = activate(fmaf(L.alpha, s, bias[cc]), L.activation, L.activation_alpha);
        if (L.round_output_half) v = round_to_half(v);
        const int row = r0 + j;
        if (two || lane < 16) {
          if (!last) {
            if (sender < ctas)
              send_b32(cluster_addr(sink.next + static_cast<uint32_t>(row * sink.stride + n) * 4u, sender),
                       __float_as_uint(v), cluster_addr(sink.bar, sender));
          } else if (sender == 0) {
            const int64_t at = static_cast<int64_t>(row) * L.n + n;
            if (sink.output_ll) {
              const uint32_t bits = p.output_half ? __half_as_ushort(__float2half_rn(v)) : __float_as_uint(v);
              store_ll(static_cast<uint64_t*>(sink.output) + at, bits, sink.seq);
            } else {
              if (p.output_half) static_cast<__half*>(sink.output)[at] = __float2half_rn(v);
              else static_cast<float*>(sink.output)[at] = v;
              wrote = true;
            }
          }
        }
      }
      if (warp_cycles) {
        const uint64_t c2 = clock64();
        warp_cycles[0] += c1 - c0;
        warp_cycles[1] += c2 - c1;
        warp_cycles[2] += 1;
      }
    }
  }
  return wrote;
}

// CTA 0's warp 0, once per request: polls the request line until all its LL words carry seq (or the lease
// has run out), then sends the request to every CTA's mailbox (counted by that CTA's box_bar) and arms every
// CTA's input mbarrier (in_bar) with the input bytes it will receive. The input itself goes out afterwards
// (read_input_share). (The input as LL words too, polled speculatively beside the request line, took longer:
// the host wrote twice the bytes, and 16.6-18.6 us per request against 11.4 us, GPU run of 2026-11-25.)
struct Receiver {
  uint32_t* line;    // shared, CTA 0: the request line's payloads (kRequestWords)
  uint32_t mailbox;  // shared addresses (the same offset in every CTA)
  uint32_t box_bar;
  uint32_t in_bar;
};

// t_seen / t_sent (lane 0): when the request line was seen and when the request went out to every CTA.
__device__ void announce_request(const KernelParams& p, const Receiver& r, uint32_t seq, int ctas, uint64_t* lease,
                                 uint64_t* t_seen, uint64_t* t_sent) {
  Channel* ch = p.channel;
  const int lane = threadIdx.x & 31;
  const int k0 = p.layer[0].k;
  // Lanes 0-3 read the request line's 64 bytes in one transaction per poll.
  bool idle = false;
  for (uint32_t spins = 1;; ++spins) {
    uint4 v = make_uint4(0, seq, 0, seq);
    if (lane < 4) v = load_acquire_16(reinterpret_cast<const unsigned char*>(ch->request) + lane * 16);
    if (__all_sync(0xffffffffu, v.y == seq && v.w == seq)) {
      if (lane < 4) {
        r.line[2 * lane] = v.x;
        r.line[2 * lane + 1] = v.z;
      }
      break;
    }
    if ((spins & 255u) == 0 && __shfl_sync(0xffffffffu, global_ns() > *lease ? 1 : 0, 0)) {
      idle = true;
      break;
    }
  }
  __syncwarp();
  if (lane == 0) {
    if (p.trace) *t_seen = global_ns();
    if (idle) {
      r.line[kRequestCommand] = kCommandIdleExit;
      r.line[kRequestRows] = 0;
    } else {
      *lease = (static_cast<uint64_t>(r.line[kRequestLeaseHi]) << 32) | r.line[kRequestLeaseLo];
    }
  }
  __syncwarp();
  const uint32_t command = r.line[kRequestCommand];
  const uint32_t rows = min(r.line[kRequestRows], static_cast<uint32_t>(p.max_rows));
  const uint32_t in_bytes = command == kCommandRun ? rows * static_cast<uint32_t>(k0) * 4u : 0u;
  if (lane < ctas) {
    const uint32_t box_bar = cluster_addr(r.box_bar, lane), box = cluster_addr(r.mailbox, lane);
    bar_arm_remote(box_bar, 32u);
    send_v4(box, make_uint4(seq, command, rows, r.line[kRequestOutputLo]), box_bar);
    send_v4(box + 16, make_uint4(r.line[kRequestOutputHi], r.line[kRequestInputLo], r.line[kRequestInputHi], 0), box_bar);
    bar_arm_remote(cluster_addr(r.in_bar, lane), in_bytes);
  }
  if (lane == 0 && p.trace) *t_sent = global_ns();
}

// This CTA's share of the request's input: read from the request's device buffer or the mapped input, sent to
// every CTA. Elements [first, last) of the rows x k0 input (multiples of 4 on the 16-byte path).
__device__ void read_input_share(const KernelParams& p, const InputSink& sink, const unsigned char* in, int first,
                                 int last) {
  if (!p.input_half && sink.k0 % 4 == 0 && (reinterpret_cast<uintptr_t>(in) & 15u) == 0) {
    for (int e = first + 4 * threadIdx.x; e < last; e += 4 * blockDim.x) {
      const uint4 raw = load_volatile_16(in + static_cast<int64_t>(e) * 4);
      sink.send4(e, make_float4(__uint_as_float(raw.x), __uint_as_float(raw.y), __uint_as_float(raw.z), __uint_as_float(raw.w)));
    }
  } else {
    for (int e = first + threadIdx.x; e < last; e += blockDim.x)
      sink.send(e, p.input_half ? half_bits_to_float(load_volatile_16bit(in + static_cast<int64_t>(e) * 2))
                                : __uint_as_float(load_volatile_32(in + static_cast<int64_t>(e) * 4)));
  }
}

// Which elements of a `total`-element input CTA `rank` reads: all of it on CTA 0 (kInputCta0), or an even
// share in 4-element units (kInputSpread: every CTA reads and sends 1/ctas).
__device__ __forceinline__ int2 input_share(const KernelParams& p, int total, int rank, int ctas) {
  if (!p.input_spread) return rank == 0 ? make_int2(0, total) : make_int2(0, 0);
  const int units = (total + 3) / 4;
  const int a = static_cast<int>(static_cast<int64_t>(units) * rank / ctas) * 4;
  const int b = static_cast<int>(static_cast<int64_t>(units) * (rank + 1) / ctas) * 4;
  return make_int2(min(a, total), min(b, total));
}

__global__ void __launch_bounds__(kThreads, 1)
    resident_mlp_kernel(const __grid_constant__ KernelParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ __align__(16) uint32_t mailbox[8];  // seq, command, rows, output lo/hi, input lo/hi (sent by CTA 0)
  __shared__ __align__(8) uint64_t box_bar;      // the request has arrived
  __shared__ __align__(8) uint64_t in_bar;       // the input has arrived
  __shared__ __align__(8) uint64_t layer_bar[kMaxLayers];  // layer l's columns from every CTA have arrived
  __shared__ uint32_t request_line[kRequestWords];  // CTA 0
  __shared__ ColumnRange columns[kMaxLayers];       // this CTA's columns of each layer
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int ctas = static_cast<int>(cluster.num_blocks());
  const int warp = static_cast<int>(threadIdx.x >> 5);
  Channel* ch = p.channel;

  for (int l = 0; l < p.layers; ++l) {
    const LayerParams& L = p.layer[l];
    const ColumnRange range = column_range(L.n, rank, ctas);
    const int col0 = range.first, cols = range.count;
    if (threadIdx.x == 0) columns[l] = range;
    if (L.weight_half) stage_weights<uint16_t>(L, smem, col0, cols);
    else stage_weights<uint32_t>(L, smem, col0, cols);
  }
  if (threadIdx.x == 0) {
    bar_init(&box_bar);
    bar_init(&in_bar);
    for (int l = 0; l < kMaxLayers; ++l) bar_init(&layer_bar[l]);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  cluster.sync();  // weights staged, every CTA's mbarriers initialised before anyone sends
  if (rank == 0 && threadIdx.x == 0) {
    ch->ready_gpu_ns = global_ns();
    __threadfence_system();
    store_release_sys(&ch->ready, p.generation);
  }

  const Receiver receiver{request_line, smem_addr(mailbox), smem_addr(&box_bar), smem_addr(&in_bar)};
  const InputSink input_sink{smem_addr(smem + p.input_offset), smem_addr(&in_bar), p.layer[0].k, p.layer[0].k_pad, ctas,
                             p.round_input_half != 0};
  uint32_t last_seq = p.start_seq;
  uint32_t phase = 0;  // parity of the current request's phase, the same for in_bar and every layer_bar
  uint64_t lease = global_ns() + p.idle_ns;  // CTA 0's copy of the lease
  const bool tracer = p.trace && rank == 0 && threadIdx.x == 0;
  uint64_t phase_ns[kTracePhases] = {}, answered = 0, cycles = 0, c_seen = 0, t_prev = 0;
  uint64_t warp_cycles[3] = {0, 0, 0};  // kTraceWarp*: CTA 0's thread 0 only
  auto lap = [&](int phase_id) {  // CTA 0's thread 0 only
    if (!tracer) return;
    const uint64_t now = global_ns();
    phase_ns[phase_id] += now - t_prev;
    t_prev = now;
  };
  for (;;) {
    if (rank == 0 && warp == 0) {
      uint64_t t_seen = 0, t_sent = 0;
      announce_request(p, receiver, last_seq + 1, ctas, &lease, &t_seen, &t_sent);
      if (tracer) {
        phase_ns[kTraceHeader] += t_sent - t_seen;
        t_prev = t_sent;
        c_seen = clock64();
      }
    }
    bar_wait(&box_bar, phase);  // every CTA has the request
    const uint32_t seq = mailbox[0], command = mailbox[1];
    const int rows = min(static_cast<int>(mailbox[2]), p.max_rows);
    const uint64_t out_addr = (static_cast<uint64_t>(mailbox[4]) << 32) | mailbox[3];
    const uint64_t in_addr = (static_cast<uint64_t>(mailbox[6]) << 32) | mailbox[5];
    if (command != kCommandRun) break;
    last_seq = seq;
    {
      // The input: the request's device buffer, or the mapped input (after CTA 0's acquire of the request line,
      // which the mailbox's mbarrier wait extends to every CTA).
      const unsigned char* in = in_addr ? reinterpret_cast<const unsigned char*>(in_addr) : static_cast<const unsigned char*>(p.input);
      const int2 share = input_share(p, rows * p.layer[0].k, rank, ctas);
      if (share.y > share.x) read_input_share(p, input_sink, in, share.x, share.y);
    }
    lap(kTraceInput);
    bar_wait(&in_bar, phase);  // every CTA's share of the input has arrived
    lap(kTraceHandOut);
    // Arm this request's phase of every hidden layer's mbarrier with the bytes it receives (some may be
    // here already). Thread 0 waits on every layer's phase below, so each phase is complete before the
    // next request arms it again.
    if (threadIdx.x == 0)
      for (int l = 0; l + 1 < p.layers; ++l)
        bar_arm_local(&layer_bar[l], static_cast<uint32_t>(rows * p.layer[l].n) * 4u);

    bool wrote = false;
    const float* x = reinterpret_cast<const float*>(smem + p.input_offset);
    int x_stride = p.layer[0].k_pad;
    LayerSink sink;
    sink.stride = p.act_stride;
    sink.output = out_addr ? reinterpret_cast<void*>(out_addr) : p.output;
    sink.output_ll = out_addr == 0;
    sink.seq = seq;
    for (int l = 0; l < p.layers; ++l) {
      const LayerParams& L = p.layer[l];
      const bool last = l + 1 == p.layers;
      if (l > 0) {
        // Warps with columns in this layer (and warp 0 always, see above) wait for the last layer's columns.
        if (warp == 0 || warp < columns[l].count) bar_wait(&layer_bar[l - 1], phase);
        lap(kTraceLayerBarriers);
        x = reinterpret_cast<const float*>(smem + p.act_offset[(l - 1) % 2]);
        x_stride = p.act_stride;
      }
      sink.next = smem_addr(smem + p.act_offset[l % 2]);
      sink.bar = smem_addr(&layer_bar[l]);
      uint64_t* wc = tracer ? warp_cycles : nullptr;
      wrote |= L.weight_half ? dense_layer<__half>(p, L, smem, x, x_stride, sink, last, rows, columns[l], ctas, wc)
                             : dense_layer<float>(p, L, smem, x, x_stride, sink, last, rows, columns[l], ctas, wc);
      lap(kTraceLayerCompute);
    }
    phase ^= 1u;
    if (out_addr) {  // device output: its stores visible to the host before done_seq
      if (wrote) __threadfence_system();
      __syncthreads();
      lap(kTraceOutput);
      if (threadIdx.x == 0) store_release_sys(&ch->done_seq[rank], seq);
      lap(kTraceDone);
    }
    if (tracer) {  // after the answer: plain posted stores, off the critical path
      ++answered;
      cycles += clock64() - c_seen;
      for (int i = 0; i < kTracePhases; ++i) ch->trace[i] = phase_ns[i];
      ch->trace[kTraceSmCycles] = cycles;
      for (int i = 0; i < 3; ++i) ch->trace[kTraceWarpKLoop + i] = warp_cycles[i];
      ch->trace[kTraceCount] = answered;
    }
  }
  cluster.sync();  // no CTA exits while another could still address its shared memory
  if (rank == 0 && threadIdx.x == 0) store_release_sys(&ch->exited, p.generation);
}

}  // namespace

Result<int> resident_smem_limit() {
  int device = 0, optin = 0;
  Status got_device = check(cudaGetDevice(&device), "cudaGetDevice");
  if (!got_device.is_ok()) return got_device;
  Status got_limit = check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                           "reading the shared-memory opt-in limit");
  if (!got_limit.is_ok()) return got_limit;
  cudaFuncAttributes attrs{};
  Status got_attrs = check(cudaFuncGetAttributes(&attrs, resident_mlp_kernel), "cudaFuncGetAttributes(resident_mlp_kernel)");
  if (!got_attrs.is_ok()) return got_attrs;
  return optin - static_cast<int>(attrs.sharedSizeBytes);
}

Status launch_resident_mlp(const KernelParams& p, cudaStream_t stream, int* clusters_out) {
  Status allowed = check(cudaFuncSetAttribute(resident_mlp_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(p.smem_bytes)),
                   cat("allowing the resident kernel ", p.smem_bytes, " bytes of shared memory per CTA"));
  if (!allowed.is_ok()) return allowed;
  if (p.ctas != kClusterCtas && p.ctas != kMaxClusterCtas)
    return Status(StatusCode::kInvalidArgument, cat("resident kernel: a cluster of ", p.ctas, " CTAs (", kClusterCtas,
                                                    " or ", kMaxClusterCtas, ")"));
  if (p.ctas > kClusterCtas) {  // above the portable size: opt in
    Status nonportable = check(cudaFuncSetAttribute(resident_mlp_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
                               "allowing the resident kernel a non-portable cluster size");
    if (!nonportable.is_ok()) return nonportable;
  }
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(p.ctas, 1, 1);
  config.blockDim = dim3(p.threads > 0 ? p.threads : kThreads, 1, 1);
  config.dynamicSmemBytes = p.smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = p.ctas;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  int clusters = 0;
  Status occupancy = check(cudaOccupancyMaxActiveClusters(&clusters, resident_mlp_kernel, &config),
            cat("cudaOccupancyMaxActiveClusters (", p.ctas, " CTAs x ", config.blockDim.x, " threads, ", p.smem_bytes,
                " bytes of shared memory each)"));
  if (!occupancy.is_ok()) return occupancy;
  if (clusters_out) *clusters_out = clusters;
  if (clusters < 1)
    return Status(StatusCode::kUnsupported,
                  cat("this GPU cannot hold one cluster of ", p.ctas, " CTAs with ", config.blockDim.x, " threads and ",
                      p.smem_bytes, " bytes of shared memory each"));
  return check(cudaLaunchKernelEx(&config, resident_mlp_kernel, p), "launching the resident kernel");
}

}  // namespace kiln::cuda::resident
