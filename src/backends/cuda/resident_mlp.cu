// The low-latency mode's resident kernel (see resident_mlp.h for the host side and docs/low_latency.md).
// One thread-block cluster of kClusterCtas CTAs stays on the GPU: at start every CTA copies its slice of
// each layer's weights (ceil(n/8) output columns, all k) into shared memory; then, per request, the CTAs
// read the input from mapped host memory (each CTA 1/8 of it, pushed to every CTA through distributed
// shared memory), run the layers in FP32 FMA (each CTA computes its columns and pushes them into every
// CTA's next activation buffer; one cluster barrier per layer), and the last layer's columns go straight
// to the mapped output, followed by a per-CTA done sequence number.
//
// Shared memory of one CTA (offsets from the host, all 16-byte aligned):
//   per layer: weights [cols_per_cta][k_pad] (float or half), bias [cols_per_cta] float
//   input      [max_rows][k_pad0] float      (written by every CTA's input slice)
//   act[0..1]  [max_rows][act_stride] float  (layer l > 0 reads act[(l-1)%2], layer l < last writes act[l%2])
#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include "backends/cuda/cuda_util.h"
#include "backends/cuda/resident_mlp_kernel.h"

namespace kiln::cuda::resident {
namespace {

namespace cg = cooperative_groups;

__device__ __forceinline__ uint32_t load_acquire_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
// .cv: the host rewrites these lines for every request, so never use a cached copy.
__device__ __forceinline__ uint4 load_cv_16(const void* p) {
  uint4 v;
  asm volatile("ld.global.cv.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ uint64_t load_cv_64(const void* p) {
  uint64_t v;
  asm volatile("ld.global.cv.u64 %0, [%1];" : "=l"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t load_cv_32(const void* p) {
  uint32_t v;
  asm volatile("ld.global.cv.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}
__device__ __forceinline__ unsigned short load_cv_16bit(const void* p) {
  unsigned short v;
  asm volatile("ld.global.cv.u16 %0, [%1];" : "=h"(v) : "l"(p));
  return v;
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

// 8 halves in 16 bytes as floats.
__device__ __forceinline__ void unpack_half8(const uint4& raw, float* out) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
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

// This CTA's share of the request's input ([rows, k0] in mapped memory), converted to float, stored into
// every CTA's input buffer. Returns through the caller's cluster barrier.
__device__ void distribute_input(const KernelParams& p, const unsigned char* input, cg::cluster_group& cluster,
                                 unsigned char* smem, int rows, int rank, int readers, int ctas, int buffer) {
  const int k0 = p.layer[0].k, stride = p.layer[0].k_pad;
  float* local = reinterpret_cast<float*>(smem + p.input_offset[buffer]);
  const int total = rows * k0;
  const int vec = p.input_half ? 8 : 4;  // elements per 16-byte load
  if (k0 % vec == 0) {
    const int units = total / vec;
    const int begin = static_cast<int>(static_cast<int64_t>(units) * rank / readers);
    const int end = static_cast<int>(static_cast<int64_t>(units) * (rank + 1) / readers);
    for (int u = begin + threadIdx.x; u < end; u += blockDim.x) {
      const uint4 raw = load_cv_16(input + static_cast<int64_t>(u) * 16);
      float v[8];
      if (p.input_half) {
        unpack_half8(raw, v);
      } else {
        v[0] = __uint_as_float(raw.x); v[1] = __uint_as_float(raw.y);
        v[2] = __uint_as_float(raw.z); v[3] = __uint_as_float(raw.w);
        if (p.round_input_half)
          for (int i = 0; i < 4; ++i) v[i] = round_to_half(v[i]);
      }
      const int e = u * vec, row = e / k0, k = e - row * k0;
      for (int d = 0; d < ctas; ++d) {
        float4* dst = reinterpret_cast<float4*>(cluster.map_shared_rank(local, d) + row * stride + k);
        dst[0] = make_float4(v[0], v[1], v[2], v[3]);
        if (vec == 8) dst[1] = make_float4(v[4], v[5], v[6], v[7]);
      }
    }
  } else {
    const int begin = static_cast<int>(static_cast<int64_t>(total) * rank / readers);
    const int end = static_cast<int>(static_cast<int64_t>(total) * (rank + 1) / readers);
    for (int e = begin + threadIdx.x; e < end; e += blockDim.x) {
      float v;
      if (p.input_half) {
        v = half_bits_to_float(load_cv_16bit(input + static_cast<int64_t>(e) * 2));
      } else {
        v = __uint_as_float(load_cv_32(input + static_cast<int64_t>(e) * 4));
        if (p.round_input_half) v = round_to_half(v);
      }
      const int row = e / k0, k = e - row * k0;
      for (int d = 0; d < ctas; ++d) cluster.map_shared_rank(local, d)[row * stride + k] = v;
    }
  }
}

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
template <class W>
__device__ bool dense_layer(const KernelParams& p, const LayerParams& L, cg::cluster_group& cluster,
                            unsigned char* smem, const float* x, int x_stride, float* next, bool last, int rows,
                            int rank, int ctas, void* output, uint64_t* warp_cycles) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int col0 = static_cast<int>(static_cast<int64_t>(L.n) * rank / ctas);
  const int cols = static_cast<int>(static_cast<int64_t>(L.n) * (rank + 1) / ctas) - col0;
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
      for (int h = 0; h < (two ? 2 : 1); ++h) {
        const int cc = h ? cb : c, n = col0 + cc;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (r0 + j >= rows) break;  // uniform across the warp
          float s = acc[h][j];
#pragma unroll
          for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
          float v = activate(fmaf(L.alpha, s, bias[cc]), L.activation, L.activation_alpha);
          if (L.round_output_half) v = round_to_half(v);
          const int row = r0 + j;
          if (!last) {
            if (lane < ctas) cluster.map_shared_rank(next, lane)[row * p.act_stride + n] = v;
          } else if (lane == 0) {
            const int64_t at = static_cast<int64_t>(row) * L.n + n;
            if (p.output_half) static_cast<__half*>(output)[at] = __float2half_rn(v);
            else static_cast<float*>(output)[at] = v;
            wrote = true;
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

__global__ void __launch_bounds__(kThreads, 1)
    resident_mlp_kernel(const __grid_constant__ KernelParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ uint64_t mailbox[4];   // seq, command, rows, output address of the request (written by CTA 0)
  __shared__ uint64_t poll_box[5];  // CTA 0: what its thread 0 saw (the above, then the input address)
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int ctas = static_cast<int>(cluster.num_blocks());
  Channel* ch = p.channel;

  for (int l = 0; l < p.layers; ++l) {
    const LayerParams& L = p.layer[l];
    const int col0 = static_cast<int>(static_cast<int64_t>(L.n) * rank / ctas);
    const int cols = static_cast<int>(static_cast<int64_t>(L.n) * (rank + 1) / ctas) - col0;
    if (L.weight_half) stage_weights<uint16_t>(L, smem, col0, cols);
    else stage_weights<uint32_t>(L, smem, col0, cols);
  }
  cluster.sync();
  if (rank == 0 && threadIdx.x == 0) {
    ch->ready_gpu_ns = global_ns();
    __threadfence_system();
    store_release_sys(&ch->ready, p.generation);
  }

  uint32_t last_seq = p.start_seq;
  uint64_t lease = global_ns() + p.idle_ns;  // the poller's copy of the lease
  const bool tracer = rank == 0 && threadIdx.x == 0;
  uint64_t phase_ns[kTracePhases] = {}, answered = 0, cycles = 0, c_seen = 0, t_prev = 0;
  uint64_t warp_cycles[3] = {0, 0, 0};  // kTraceWarp*: CTA 0's thread 0 only
  auto lap = [&](int phase) {  // CTA 0's thread 0 only
    if (!tracer) return;
    const uint64_t now = global_ns();
    phase_ns[phase] += now - t_prev;
    t_prev = now;
  };
  for (;;) {
    // CTA 0 alone talks to the host: thread 0 polls for the next request (or the end of the lease), then
    // all of CTA 0 reads the input from host memory, and the request and its input go to every CTA
    // through distributed shared memory ahead of one cluster barrier. (One PCIe poller: with one per CTA
    // the requests took 2.5x longer on the H100.)
    if (rank == 0) {
      if (threadIdx.x == 0) {
        uint32_t s = last_seq, command = kCommandIdleExit, rows = 0;
        uint64_t in_addr = 0, out_addr = 0;
        for (uint32_t spins = 0;; ++spins) {
          const uint32_t now = load_acquire_sys(&ch->request_seq);
          if (now != last_seq) {
            // The header after the acquire: one weak load per line, in flight together (Channel).
            const uint4 head = load_cv_16(&ch->request_seq);  // seq, command, rows, pad
            const uint4 io = load_cv_16(&ch->input_addr);     // input_addr, output_addr
            lease = load_cv_64(&ch->lease_until);
            s = now;
            command = head.y;
            rows = head.z;
            in_addr = (static_cast<uint64_t>(io.y) << 32) | io.x;
            out_addr = (static_cast<uint64_t>(io.w) << 32) | io.z;
            t_prev = global_ns();
            c_seen = clock64();
            break;
          }
          if ((spins & 255u) == 255u && global_ns() > lease) break;
        }
        poll_box[0] = s;
        poll_box[1] = command;
        poll_box[2] = rows;
        poll_box[3] = out_addr;
        poll_box[4] = in_addr;
      }
      __syncthreads();
      lap(kTraceHeader);
      const uint32_t s = static_cast<uint32_t>(poll_box[0]), command = static_cast<uint32_t>(poll_box[1]);
      const uint32_t rows = static_cast<uint32_t>(poll_box[2]);
      const unsigned char* input =
          poll_box[4] ? reinterpret_cast<const unsigned char*>(poll_box[4]) : static_cast<const unsigned char*>(p.input);
      if (command == kCommandRun)
        distribute_input(p, input, cluster, smem, min(static_cast<int>(rows), p.max_rows), 0, 1, ctas,
                         static_cast<int>(s & 1u));
      lap(kTraceInput);
      if (threadIdx.x < ctas) {
        uint64_t* box = cluster.map_shared_rank(mailbox, static_cast<int>(threadIdx.x));
        for (int i = 0; i < 4; ++i) box[i] = poll_box[i];
      }
    }
    cluster.sync();  // every CTA has the request and its input
    const uint32_t seq = static_cast<uint32_t>(mailbox[0]);
    const uint32_t command = static_cast<uint32_t>(mailbox[1]);
    const int rows = min(static_cast<int>(mailbox[2]), p.max_rows);
    void* output = mailbox[3] ? reinterpret_cast<void*>(mailbox[3]) : p.output;
    if (command != kCommandRun) break;
    last_seq = seq;
    lap(kTraceHandOut);
    const int buffer = static_cast<int>(seq & 1u);

    bool wrote = false;
    const float* x = reinterpret_cast<const float*>(smem + p.input_offset[buffer]);
    int x_stride = p.layer[0].k_pad;
    for (int l = 0; l < p.layers; ++l) {
      const LayerParams& L = p.layer[l];
      const bool last = l + 1 == p.layers;
      float* next = reinterpret_cast<float*>(smem + p.act_offset[l % 2]);
      uint64_t* wc = tracer ? warp_cycles : nullptr;
      wrote |= L.weight_half ? dense_layer<__half>(p, L, cluster, smem, x, x_stride, next, last, rows, rank, ctas, output, wc)
                             : dense_layer<float>(p, L, cluster, smem, x, x_stride, next, last, rows, rank, ctas, output, wc);
      lap(kTraceLayerCompute);
      if (!last) {
        cluster.sync();  // the pushed columns are visible; buffer l%2 is read next, (l+1)%2 free to write
        lap(kTraceLayerBarriers);
        x = next;
        x_stride = p.act_stride;
      }
    }
    if (wrote) __threadfence_system();  // this thread's output stores are visible to the host before done_seq
    __syncthreads();
    lap(kTraceOutput);
    if (threadIdx.x == 0) store_release_sys(&ch->done_seq[rank], seq);
    if (tracer) {  // after the answer: plain posted stores, off the critical path
      lap(kTraceDone);
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
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(kClusterCtas, 1, 1);
  config.blockDim = dim3(p.threads > 0 ? p.threads : kThreads, 1, 1);
  config.dynamicSmemBytes = p.smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = kClusterCtas;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  int clusters = 0;
  Status occupancy = check(cudaOccupancyMaxActiveClusters(&clusters, resident_mlp_kernel, &config),
            cat("cudaOccupancyMaxActiveClusters (", kClusterCtas, " CTAs x ", kThreads, " threads, ", p.smem_bytes,
                " bytes of shared memory each)"));
  if (!occupancy.is_ok()) return occupancy;
  if (clusters_out) *clusters_out = clusters;
  if (clusters < 1)
    return Status(StatusCode::kUnsupported,
                  cat("this GPU cannot hold one cluster of ", kClusterCtas, " CTAs with ", kThreads, " threads and ",
                      p.smem_bytes, " bytes of shared memory each"));
  return check(cudaLaunchKernelEx(&config, resident_mlp_kernel, p), "launching the resident kernel");
}

}  // namespace kiln::cuda::resident
