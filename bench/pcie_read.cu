// bench_pcie_read: can the SMs read pinned host memory over PCIe faster than the copy engine copies it?
// Issue 8's pinned batch-8192 row is bound by the host-to-device copy of the 25.7 MB input (0.49-0.52 ms);
// Kiln's end to end already sits at ~1.00x that copy, so only a faster way across PCIe moves the row.
//
// Timed (median of --reps, each rep on one of three rotating 25.7 MB pinned buffers, L2 flushed before each
// rep so no read is served from L2):
//   ce          cudaMemcpyAsync of the whole buffer (one copy engine)
//   ce2         two halves on two streams at once (two copy engines, if the driver gives them)
//   sm <mode>   a kernel that reads the pinned buffer through its device address (zero copy) and writes
//               device memory: FP32 as is, or converted to FP16 (what an FP16 engine wants); grid-stride or
//               one contiguous slice per CTA; several grid sizes and loads in flight per thread
//   ce+sm <f>   the copy engine takes the first fraction f while the kernel reads the rest, at once
// Each line: event-timed ms on the GPU, host-timed ms (launch to synchronize), GB/s from the event time.
// Every variant's output is compared with the source (FP16 to its rounding) before it is timed.
// Then the host side (an FP16 engine rounds its FP32 input to FP16 anyway, so the host could send half the
// bytes): host threads converting FP32 -> FP16 or copying FP32 (the pageable path's staging), alone and
// pipelined with the copy engine chunk by chunk (threads convert chunk c+1 while chunk c crosses), host-timed.
// Usage: bench_pcie_read [--rows=8192] [--reps=25]
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cuda_check.h"

namespace {

__device__ __forceinline__ void store4(float* dst, size_t i, float4 v) { reinterpret_cast<float4*>(dst)[i] = v; }
__device__ __forceinline__ void store4(__half* dst, size_t i, float4 v) {
  __half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w);
  uint2 u;
  u.x = *reinterpret_cast<unsigned*>(&a);
  u.y = *reinterpret_cast<unsigned*>(&b);
  reinterpret_cast<uint2*>(dst)[i] = u;
}

// Reads float4s begin + t, begin + t + stride, ... below end (t = this thread's index), kUnroll loads in
// flight, and stores them to dst.
template <typename Out, int kUnroll>
__device__ __forceinline__ void read_span(const float4* __restrict__ src, Out* __restrict__ dst, size_t i, size_t end,
                                          size_t stride) {
  for (; i + (kUnroll - 1) * stride < end; i += kUnroll * stride) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) store4(dst, i + u * stride, v[u]);
  }
  for (; i < end; i += stride) store4(dst, i, src[i]);
}

// Grid-stride: every pass of the grid reads one contiguous span of gridDim*blockDim*kUnroll float4s.
template <typename Out, int kUnroll>
__global__ void read_strided(const float4* __restrict__ src, Out* __restrict__ dst, size_t n4) {
  read_span<Out, kUnroll>(src, dst, static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x, n4,
                          static_cast<size_t>(gridDim.x) * blockDim.x);
}

// One contiguous slice per CTA (as a fused kernel's row tile would read it).
template <typename Out, int kUnroll>
__global__ void read_sliced(const float4* __restrict__ src, Out* __restrict__ dst, size_t n4) {
  const size_t per = (n4 + gridDim.x - 1) / gridDim.x;
  const size_t begin = blockIdx.x * per, end = begin + per < n4 ? begin + per : n4;
  read_span<Out, kUnroll>(src, dst, begin + threadIdx.x, end, blockDim.x);
}

struct SmVariant {
  std::string name;
  bool half;
  std::function<void(const float4*, void*, size_t, cudaStream_t)> launch;
};

template <typename Out, int kUnroll>
SmVariant make_variant(bool sliced, int blocks, int threads) {
  const bool half = std::is_same_v<Out, __half>;
  std::string name = std::string(half ? "fp16" : "fp32") + (sliced ? " sliced" : " strided") + " blocks=" +
                     std::to_string(blocks) + " threads=" + std::to_string(threads) + " unroll=" + std::to_string(kUnroll);
  return {name, half, [=](const float4* s, void* d, size_t n4, cudaStream_t st) {
            if (sliced)
              read_sliced<Out, kUnroll><<<blocks, threads, 0, st>>>(s, static_cast<Out*>(d), n4);
            else
              read_strided<Out, kUnroll><<<blocks, threads, 0, st>>>(s, static_cast<Out*>(d), n4);
          }};
}

// FP32 -> FP16, round to nearest even (as __float2half_rn), 16 at a time; n a multiple of 16.
__attribute__((target("avx512f,f16c"))) void convert_f16(const float* x, uint16_t* y, size_t n, bool stream) {
  for (size_t i = 0; i < n; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (stream)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(y + i), h);
    else
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), h);
  }
}

// Threads that take pieces of one job in order; the calling thread helps. done[c] counts chunk c's pieces.
class Pool {
 public:
  explicit Pool(int threads) {
    for (int t = 1; t < threads; ++t) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    stop_ = true;
    gen_.fetch_add(1);
    for (auto& t : threads_) t.join();
  }
  // work(i) for i in [0, pieces); chunk_of(i) for done counts; returns at once (call wait_chunk / wait_all).
  void start(size_t pieces, size_t chunks, std::function<void(size_t)> work, size_t per_chunk) {
    work_ = std::move(work);
    pieces_ = pieces;
    per_chunk_ = per_chunk;
    done_ = std::vector<std::atomic<size_t>>(chunks);
    next_.store(0);
    busy_.store(static_cast<int>(threads_.size()));
    gen_.fetch_add(1, std::memory_order_release);
  }
  void wait_chunk(size_t c) {
    const size_t want = std::min(per_chunk_, pieces_ - std::min(pieces_, c * per_chunk_));  // the last is short
    while (done_[c].load(std::memory_order_acquire) < want)
      if (!take()) std::this_thread::yield();
  }
  void wait_all() {
    while (take()) {
    }
    while (busy_.load(std::memory_order_acquire) > 0) std::this_thread::yield();
  }

 private:
  bool take() {
    const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= pieces_) return false;
    work_(i);
    done_[i / per_chunk_].fetch_add(1, std::memory_order_release);
    return true;
  }
  void loop() {
    unsigned seen = 0;  // gen_'s value at construction: a start() before this thread runs is not missed
    for (;;) {
      while (gen_.load(std::memory_order_acquire) == seen) _mm_pause();
      seen = gen_.load();
      if (stop_) return;
      while (take()) {
      }
      busy_.fetch_sub(1, std::memory_order_release);
    }
  }
  std::vector<std::thread> threads_;
  std::atomic<unsigned> gen_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> busy_{0};
  std::function<void(size_t)> work_;
  size_t pieces_ = 0, per_chunk_ = 1;
  std::vector<std::atomic<size_t>> done_;
  std::atomic<size_t> next_{0};
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a pipe as they are printed
  size_t rows = 8192;
  int reps = 25;
  for (int a = 1; a < argc; ++a) {
    if (std::strncmp(argv[a], "--rows=", 7) == 0) {
      rows = std::strtoull(argv[a] + 7, nullptr, 10);
    } else if (std::strncmp(argv[a], "--reps=", 7) == 0) {
      reps = std::atoi(argv[a] + 7);
    } else {
      std::fprintf(stderr, "bench_pcie_read: unknown argument '%s' (--rows=N, --reps=N)\n", argv[a]);
      return 2;
    }
  }
  if (rows == 0 || reps < 3) {
    std::fprintf(stderr, "bench_pcie_read: --rows must be > 0 and --reps >= 3\n");
    return 2;
  }
  const size_t n = rows * 784, bytes = n * sizeof(float), n4 = n / 4;
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bench_pcie_read: %s, %d SMs, %zu rows x 784 FP32 = %.1f MB per copy, %d reps (median)\n", prop.name,
              prop.multiProcessorCount, rows, bytes / 1e6, reps);

  constexpr int kBuffers = 3;  // 77 MB of sources in rotation: more than the 50 MB L2
  std::vector<float*> host(kBuffers);
  for (auto& h : host) {
    CHECK(cudaHostAlloc(reinterpret_cast<void**>(&h), bytes, cudaHostAllocMapped));
    for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>((i * 2654435761u) % 20011) / 20011.0f - 0.5f;
  }
  std::vector<const float4*> host_dev(kBuffers);
  for (int b = 0; b < kBuffers; ++b) {
    void* d = nullptr;
    CHECK(cudaHostGetDevicePointer(&d, host[b], 0));
    host_dev[b] = static_cast<const float4*>(d);
  }
  float* dst = nullptr;
  CHECK(cudaMalloc(&dst, bytes));
  const size_t flush_bytes = 2 * static_cast<size_t>(prop.l2CacheSize) + (16 << 20);
  void* flush = nullptr;
  CHECK(cudaMalloc(&flush, flush_bytes));
  cudaStream_t s0, s1, s2;
  CHECK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
  CHECK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CHECK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  cudaEvent_t e0, e1, j1, j2;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  CHECK(cudaEventCreateWithFlags(&j1, cudaEventDisableTiming));
  CHECK(cudaEventCreateWithFlags(&j2, cudaEventDisableTiming));

  // Checks dst against host[0] (FP16: to its rounding).
  auto verify = [&](bool half, const char* what) {
    std::vector<unsigned char> out(bytes);
    CHECK(cudaMemcpy(out.data(), dst, half ? n * 2 : bytes, cudaMemcpyDeviceToHost));
    double err = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const float v = half ? __half2float(reinterpret_cast<const __half*>(out.data())[i]) : reinterpret_cast<const float*>(out.data())[i];
      err = std::max(err, static_cast<double>(std::fabs(v - host[0][i])));
    }
    if (err > (half ? 1e-3 : 0.0)) {
      std::printf("FAILED %s: max |out - src| = %g\n", what, err);
      std::exit(1);
    }
  };
  // Times `issue(buffer)` (all on s0 or joined back into it): event ms and host ms, medians.
  auto time = [&](const std::string& name, const std::function<void(int)>& issue, double moved_bytes) {
    std::vector<double> ev, wall;
    for (int r = -3; r < reps; ++r) {
      const int b = (r + 3) % kBuffers;
      CHECK(cudaMemsetAsync(flush, r & 0xff, flush_bytes, s0));  // evicts the sources from L2
      CHECK(cudaMemsetAsync(dst, 0xff, bytes, s0));              // poison
      CHECK(cudaStreamSynchronize(s0));
      const auto t0 = std::chrono::steady_clock::now();
      CHECK(cudaEventRecord(e0, s0));
      issue(b);
      CHECK(cudaEventRecord(e1, s0));
      CHECK(cudaStreamSynchronize(s0));
      const auto t1 = std::chrono::steady_clock::now();
      float ms = 0.0f;
      CHECK(cudaEventElapsedTime(&ms, e0, e1));
      if (r >= 0) {
        ev.push_back(ms);
        wall.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    }
    const double m = median(ev);
    std::printf("%-52s event %.4f ms  host %.4f ms  %.1f GB/s\n", name.c_str(), m, median(wall), moved_bytes / (m * 1e6));
  };

  // The copy engine, alone and as two halves on two streams.
  auto ce = [&](int b) { CHECK(cudaMemcpyAsync(dst, host[b], bytes, cudaMemcpyHostToDevice, s0)); };
  ce(0);
  CHECK(cudaStreamSynchronize(s0));
  verify(false, "ce");
  auto fork = [&] {
    CHECK(cudaEventRecord(j1, s0));
    CHECK(cudaStreamWaitEvent(s1, j1, 0));
    CHECK(cudaStreamWaitEvent(s2, j1, 0));
  };
  auto join = [&] {
    CHECK(cudaEventRecord(j1, s1));
    CHECK(cudaEventRecord(j2, s2));
    CHECK(cudaStreamWaitEvent(s0, j1, 0));
    CHECK(cudaStreamWaitEvent(s0, j2, 0));
  };
  auto ce2 = [&](int b) {
    fork();
    const size_t half = (n / 2) * sizeof(float);
    CHECK(cudaMemcpyAsync(dst, host[b], half, cudaMemcpyHostToDevice, s1));
    CHECK(cudaMemcpyAsync(reinterpret_cast<char*>(dst) + half, reinterpret_cast<char*>(host[b]) + half, bytes - half,
                          cudaMemcpyHostToDevice, s2));
    join();
  };
  time("ce (cudaMemcpyAsync)", ce, static_cast<double>(bytes));
  time("ce2 (two halves, two streams)", ce2, static_cast<double>(bytes));

  const int sms = prop.multiProcessorCount;
  std::vector<SmVariant> variants;
  for (int mult : {1, 2, 4, 8}) {
    variants.push_back(make_variant<float, 4>(false, sms * mult, 256));
    variants.push_back(make_variant<float, 8>(false, sms * mult, 256));
  }
  variants.push_back(make_variant<float, 4>(false, sms * 4, 512));
  variants.push_back(make_variant<float, 4>(true, sms, 512));
  variants.push_back(make_variant<float, 8>(true, sms, 512));
  variants.push_back(make_variant<float, 4>(true, sms * 2, 512));
  variants.push_back(make_variant<float, 4>(true, sms * 4, 256));
  variants.push_back(make_variant<__half, 4>(false, sms * 4, 256));
  variants.push_back(make_variant<__half, 8>(false, sms * 2, 256));
  variants.push_back(make_variant<__half, 4>(true, sms, 512));
  for (const auto& v : variants) {
    v.launch(host_dev[0], dst, n4, s0);
    CHECK(cudaGetLastError());
    CHECK(cudaStreamSynchronize(s0));
    verify(v.half, v.name.c_str());
    time("sm " + v.name, [&](int b) { v.launch(host_dev[b], dst, n4, s0); }, static_cast<double>(bytes));
  }

  // The copy engine and the SMs at once on disjoint parts (fp32, the grid-stride kernel at 4 CTAs per SM).
  const SmVariant both = make_variant<float, 4>(false, sms * 4, 256);
  for (double f : {0.5, 0.6, 0.7, 0.8}) {
    const size_t ce_n4 = static_cast<size_t>(f * n4);
    auto issue = [&](int b) {
      fork();
      CHECK(cudaMemcpyAsync(dst, host[b], ce_n4 * 16, cudaMemcpyHostToDevice, s1));
      both.launch(host_dev[b] + ce_n4, reinterpret_cast<float4*>(dst) + ce_n4, n4 - ce_n4, s2);
      join();
    };
    issue(0);
    CHECK(cudaGetLastError());
    CHECK(cudaStreamSynchronize(s0));
    verify(false, "ce+sm");
    char name[64];
    std::snprintf(name, sizeof name, "ce+sm (ce takes %.0f%%)", f * 100);
    time(name, issue, static_cast<double>(bytes));
  }
  // The host side: threads converting (or copying) the FP32 input into a pinned staging buffer, alone and
  // pipelined with the copy engine. Pieces of 64 KB of FP32 input; chunks of `chunks` equal parts.
  if (n % (16 * 64) != 0) {
    std::printf("bench_pcie_read: host side skipped (rows * 784 not a multiple of 1024)\n");
    return 0;
  }
  uint16_t* staging16 = nullptr;
  float* staging32 = nullptr;
  CHECK(cudaHostAlloc(reinterpret_cast<void**>(&staging16), n * 2, cudaHostAllocDefault));
  CHECK(cudaHostAlloc(reinterpret_cast<void**>(&staging32), bytes, cudaHostAllocDefault));
  const size_t piece = 16384;  // floats per piece (64 KB of input)
  const size_t pieces = (n + piece - 1) / piece;
  for (int threads : {1, 4, 8, 16}) {
    Pool pool(threads);
    for (int job = 0; job < 3; ++job) {  // 0 convert, 1 convert with streaming stores, 2 copy FP32
      for (int chunks : {0, 8, 16}) {   // 0: host work alone
        if (threads == 1 && chunks > 0) continue;
        const size_t nchunks = chunks ? static_cast<size_t>(chunks) : 1;
        const size_t per_chunk = (pieces + nchunks - 1) / nchunks;
        std::vector<double> wall;
        for (int r = -3; r < reps; ++r) {
          const int b = (r + 3) % kBuffers;
          const float* src = host[b];
          auto work = [&](size_t i) {
            const size_t off = i * piece, len = std::min(piece, n - off);
            if (job == 2)
              std::memcpy(staging32 + off, src + off, len * 4);
            else
              convert_f16(src + off, staging16 + off, len, job == 1);
          };
          CHECK(cudaMemsetAsync(flush, r & 0xff, flush_bytes, s0));
          CHECK(cudaStreamSynchronize(s0));
          const auto t0 = std::chrono::steady_clock::now();
          pool.start(pieces, nchunks, work, per_chunk);
          for (size_t c = 0; c < nchunks && chunks > 0; ++c) {
            pool.wait_chunk(c);
            if (job == 1) _mm_sfence();
            const size_t begin = c * per_chunk * piece, end = std::min(n, (c + 1) * per_chunk * piece);
            if (begin >= end) continue;
            if (job == 2)
              CHECK(cudaMemcpyAsync(dst + begin, staging32 + begin, (end - begin) * 4, cudaMemcpyHostToDevice, s0));
            else
              CHECK(cudaMemcpyAsync(reinterpret_cast<uint16_t*>(dst) + begin, staging16 + begin, (end - begin) * 2,
                                    cudaMemcpyHostToDevice, s0));
          }
          pool.wait_all();
          CHECK(cudaStreamSynchronize(s0));
          const auto t1 = std::chrono::steady_clock::now();
          if (r >= 0) wall.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        }
        if (job != 2 && chunks > 0) {  // what crossed is the FP16 of the source
          std::vector<uint16_t> got(n);
          CHECK(cudaMemcpy(got.data(), dst, n * 2, cudaMemcpyDeviceToHost));
          const int last = (reps + 2) % kBuffers;
          for (size_t i = 0; i < n; i += 997) {
            const float want = __half2float(__float2half_rn(host[last][i]));
            const __half_raw raw{got[i]};
            if (__half2float(__half(raw)) != want) {
              std::printf("FAILED host convert: element %zu\n", i);
              return 1;
            }
          }
        }
        const char* what = job == 0 ? "convert fp16" : job == 1 ? "convert fp16 (streaming stores)" : "copy fp32";
        char name[96];
        if (chunks)
          std::snprintf(name, sizeof name, "host %s + ce, %d threads, %d chunks", what, threads, chunks);
        else
          std::snprintf(name, sizeof name, "host %s alone, %d threads", what, threads);
        const double m = median(wall);
        std::printf("%-60s host %.4f ms  %.1f GB/s of FP32 input\n", name, m, bytes / (m * 1e6));
      }
    }
  }
  std::printf("bench_pcie_read: done\n");
  return 0;
}
