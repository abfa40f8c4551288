// The low-latency floor for bench_low_latency: a resident kernel that answers a mapped-memory ping with no
// compute (one thread polls request, writes done), the same protocol as the resident MLP minus the work.
#include <cuda_runtime.h>

#include <cstring>

#include <cstdint>

namespace {
__global__ void ping_kernel(uint32_t* request, uint32_t* done) {
  uint32_t last = 0;
  for (;;) {
    uint32_t s;
    do asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(s) : "l"(request) : "memory");
    while (s == last);
    last = s;
    if (s == 0xFFFFFFFFu) return;
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(done), "r"(s) : "memory");
  }
}
}  // namespace

cudaError_t launch_ping_kernel(uint32_t* request_dev, uint32_t* done_dev, cudaStream_t stream) {
  ping_kernel<<<1, 32, 0, stream>>>(request_dev, done_dev);
  return cudaGetLastError();
}

// Microbenchmarks of the resident kernel's building blocks (the trace shows the layers and the hand-out
// costing microseconds): a cluster barrier of 8 CTAs, with and without DSMEM stores before it, and one
// dependent read of mapped host memory (a PCIe round trip).
#include <cooperative_groups.h>

namespace {
namespace cg = cooperative_groups;

__device__ __forceinline__ uint64_t now_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void cluster_sync_kernel(int iterations, int dsmem_stores, uint64_t* out_ns) {
  __shared__ float slot[1024];
  cg::cluster_group cluster = cg::this_cluster();
  const unsigned rank = cluster.block_rank();
  cluster.sync();
  const uint64_t t0 = now_ns();
  for (int i = 0; i < iterations; ++i) {
    if (dsmem_stores && (threadIdx.x & 31) < 8)
      cluster.map_shared_rank(slot, threadIdx.x & 7)[threadIdx.x % 1024] = static_cast<float>(i);
    cluster.sync();
  }
  if (rank == 0 && threadIdx.x == 0) *out_ns = now_ns() - t0;
}

__global__ void mapped_read_kernel(const uint32_t* mapped, int iterations, uint64_t* out_ns) {
  uint32_t v = 0;
  const uint64_t t0 = now_ns();
  for (int i = 0; i < iterations; ++i) {
    uint32_t x;
    asm volatile("ld.global.cv.u32 %0, [%1];" : "=r"(x) : "l"(mapped + (v & 1u)));
    v += x;  // dependent: one round trip at a time
  }
  out_ns[0] = now_ns() - t0;
  out_ns[1] = v;
}
// Three independent reads per round (words 0, stride, 2*stride), rounds dependent on each other: does one
// thread's second and third read of mapped memory overlap the first (same 128-byte line or not)?
__global__ void mapped_read3_kernel(const uint32_t* mapped, int stride, int iterations, uint64_t* out_ns) {
  uint32_t v = 0;
  const uint64_t t0 = now_ns();
  for (int i = 0; i < iterations; ++i) {
    uint32_t a, b, c;
    const uint32_t* base = mapped + (v & 1u);
    asm volatile("ld.global.cv.u32 %0, [%1];" : "=r"(a) : "l"(base));
    asm volatile("ld.global.cv.u32 %0, [%1];" : "=r"(b) : "l"(base + stride));
    asm volatile("ld.global.cv.u32 %0, [%1];" : "=r"(c) : "l"(base + 2 * stride));
    v += a + b + c;
  }
  out_ns[0] = now_ns() - t0;
  out_ns[1] = v;
}
}  // namespace

// Nanoseconds per round of three independent reads of mapped memory, `stride` words apart.
double mapped_read3_ns(int stride, int iterations) {
  uint32_t* host = nullptr;
  uint32_t* dev = nullptr;
  uint64_t* d = nullptr;
  if (cudaHostAlloc(&host, 1024, cudaHostAllocMapped) != cudaSuccess) return -1;
  std::memset(host, 0, 1024);
  uint64_t ns[2] = {0, 0};
  const bool ok = cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev), host, 0) == cudaSuccess &&
                  cudaMalloc(&d, 16) == cudaSuccess;
  if (ok) {
    mapped_read3_kernel<<<1, 1>>>(dev, stride, iterations, d);
    (void)cudaMemcpy(ns, d, 16, cudaMemcpyDeviceToHost);
  }
  if (d) cudaFree(d);
  cudaFreeHost(host);
  return ok ? static_cast<double>(ns[0]) / iterations : -1;
}

// Nanoseconds per cluster barrier (8 CTAs of `threads`), or a negative value on a CUDA error.
double cluster_sync_ns(int threads, bool dsmem_stores, int iterations) {
  uint64_t* d = nullptr;
  if (cudaMalloc(&d, 16) != cudaSuccess) return -1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(8, 1, 1);
  config.blockDim = dim3(threads, 1, 1);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 8;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  config.attrs = attr;
  config.numAttrs = 1;
  uint64_t ns = 0;
  const bool ok = cudaLaunchKernelEx(&config, cluster_sync_kernel, iterations, dsmem_stores ? 1 : 0, d) == cudaSuccess &&
                  cudaMemcpy(&ns, d, 8, cudaMemcpyDeviceToHost) == cudaSuccess;
  cudaFree(d);
  return ok ? static_cast<double>(ns) / iterations : -1;
}

// Nanoseconds per dependent 4-byte read of mapped page-locked host memory.
double mapped_read_ns(int iterations) {
  uint32_t* host = nullptr;
  uint32_t* dev = nullptr;
  uint64_t* d = nullptr;
  if (cudaHostAlloc(&host, 64, cudaHostAllocMapped) != cudaSuccess) return -1;
  host[0] = host[1] = 0;
  uint64_t ns[2] = {0, 0};
  const bool ok = cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev), host, 0) == cudaSuccess &&
                  cudaMalloc(&d, 16) == cudaSuccess;
  if (ok) {
    mapped_read_kernel<<<1, 1>>>(dev, iterations, d);
    (void)cudaMemcpy(ns, d, 16, cudaMemcpyDeviceToHost);
  }
  if (d) cudaFree(d);
  cudaFreeHost(host);
  return ok ? static_cast<double>(ns[0]) / iterations : -1;
}
