// The low-latency floor for bench_low_latency: a resident kernel that answers a mapped-memory ping with no
// compute (one thread polls request, writes done), the same protocol as the resident MLP minus the work.
#include <cuda_runtime.h>

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
