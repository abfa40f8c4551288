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
// Usage: bench_pcie_read [--rows=8192] [--reps=25]
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#define CHECK(x)                                                                              \
  do {                                                                                        \
    cudaError_t e = (x);                                                                      \
    if (e != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace {

__device__ __forceinline__ void store4(float* dst, size_t i, float4 v) { reinterpret_cast<float4*>(dst)[i] = v; }
__device__ __forceinline__ void store4(__half* dst, size_t i, float4 v) {
  __half2 a = __floats2half2_rn(v.x, v.y), b = __floats2half2_rn(v.z, v.w);
  uint2 u;
  u.x = *reinterpret_cast<unsigned*>(&a);
  u.y = *reinterpret_cast<unsigned*>(&b);
  reinterpret_cast<uint2*>(dst)[i] = u;
}

// Grid-stride: every pass of the grid reads one contiguous span of gridDim*blockDim*kUnroll float4s.
template <typename Out, int kUnroll>
__global__ void read_strided(const float4* __restrict__ src, Out* __restrict__ dst, size_t n4) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < n4; i += kUnroll * stride) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) store4(dst, i + u * stride, v[u]);
  }
  for (; i < n4; i += stride) store4(dst, i, src[i]);
}

// One contiguous slice per CTA (as a fused kernel's row tile would read it).
template <typename Out, int kUnroll>
__global__ void read_sliced(const float4* __restrict__ src, Out* __restrict__ dst, size_t n4) {
  const size_t per = (n4 + gridDim.x - 1) / gridDim.x;
  const size_t begin = blockIdx.x * per, end = begin + per < n4 ? begin + per : n4;
  size_t i = begin + threadIdx.x;
  const size_t stride = blockDim.x;
  for (; i + (kUnroll - 1) * stride < end; i += kUnroll * stride) {
    float4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = src[i + u * stride];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) store4(dst, i + u * stride, v[u]);
  }
  for (; i < end; i += stride) store4(dst, i, src[i]);
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
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
  std::printf("bench_pcie_read: done\n");
  return 0;
}
