// bench_l2_ingest: how fast one SM takes data in from L2 into shared memory (issue 8: the fused MLP kernels
// stream every weight block through each CTA's shared memory, so this rate bounds them).
//
// Each CTA streams chunks of a 1 MB L2-resident buffer (the same for every CTA, as the weights are) through
// a ring of `stages` shared-memory stages guarded by full/empty mbarriers, and does nothing with them: a
// producer issues each chunk as one bulk copy (or `pieces` bulk copies from as many lanes, or cp.async by
// `warps` warps), and one consumer warp waits for it and releases the stage. Printed: GB/s per SM and in
// all, for 1 CTA and for one CTA per SM, after ~0.5 s of warm-up (the clock ramps up under load only), with
// the SM clock sampled by nvidia-smi beside it if wanted. Build: sm_90 (bulk copies).
// Usage: bench_l2_ingest [chunks per CTA, default 2048]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda_check.h"

namespace {

__device__ __forceinline__ unsigned smem_u32(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }
// kind 0: mbarrier.try_wait (the thread may be suspended while the phase is incomplete); 1: test_wait in a
// spin loop; 2: try_wait with a 20 ns suspend-time hint.
__device__ __forceinline__ void mbar_wait(unsigned long long* bar, unsigned parity, int kind) {
  unsigned done = 0;
  do {
    if (kind == 1)
      asm volatile("{\n .reg .pred p;\n mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
                   : "=r"(done)
                   : "r"(smem_u32(bar)), "r"(parity)
                   : "memory");
    else if (kind == 2)
      asm volatile(
          "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2, 20;\n selp.u32 %0, 1, 0, p;\n}\n"
          : "=r"(done)
          : "r"(smem_u32(bar)), "r"(parity)
          : "memory");
    else
      asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
                   : "=r"(done)
                   : "r"(smem_u32(bar)), "r"(parity)
                   : "memory");
  } while (!done);
}

constexpr size_t kSrcBytes = 1 << 20;

// mode 0: `pieces` bulk copies per chunk (lanes 0..pieces-1 of the producer warp); mode 1: cp.async 16-byte
// pieces by `warps` producer warps.
__global__ void ingest(const unsigned char* src, int chunk, int stages, int chunks, int mode, int pieces, int warps,
                       int wait_kind) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ __align__(8) unsigned long long full[8], empty[8];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  if (tid == 0) {
    for (int s = 0; s < stages; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(&full[s])), "r"(mode == 0 ? 1 : warps * 32));
      asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(&empty[s])), "r"(1));
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();
  const int consumer = mode == 0 ? 1 : warps;
  if (warp == consumer) {  // consumer: wait, release
    for (int c = 0; c < chunks; ++c) {
      mbar_wait(&full[c % stages], (c / stages) & 1, wait_kind);
      __syncwarp();
      if (lane == 0) asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(&empty[c % stages])) : "memory");
    }
    return;
  }
  if (warp > consumer) return;
  for (int c = 0; c < chunks; ++c) {
    const int s = c % stages;
    if (c >= stages) mbar_wait(&empty[s], ((c / stages) - 1) & 1, wait_kind);
    const unsigned char* from = src + (size_t(c) * chunk + size_t(blockIdx.x % 8) * 65536) % kSrcBytes;
    unsigned char* to = smem + size_t(s) * chunk;
    if (mode == 0) {
      if (warp == 0 && lane == 0)
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(&full[s])), "r"(chunk) : "memory");
      __syncwarp();
      const int part = chunk / pieces;
      if (warp == 0 && lane < pieces)
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                         smem_u32(to + lane * part)),
                     "l"(from + lane * part), "r"(part), "r"(smem_u32(&full[s]))
                     : "memory");
    } else {
      for (int o = tid * 16; o < chunk; o += warps * 32 * 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(to + o)), "l"(from + o));
      asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(&full[s])) : "memory");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int chunks = argc > 1 ? std::atoi(argv[1]) : 2048;
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  unsigned char* src = nullptr;
  CHECK(cudaMalloc(&src, 2 * kSrcBytes));  // chunks start in the first MB and may run past it
  CHECK(cudaMemset(src, 1, 2 * kSrcBytes));
  CHECK(cudaFuncSetAttribute(ingest, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  struct Config {
    const char* what;
    int mode, chunk, stages, pieces, warps, wait_kind = 0;
  };
  const std::vector<Config> configs = {
      {"bulk 32K x4 stages", 0, 32768, 4, 1, 0},    {"bulk 16K x8 stages", 0, 16384, 8, 1, 0},
      {"bulk 32K x6 stages", 0, 32768, 6, 1, 0},    {"bulk 8K x8 stages", 0, 8192, 8, 1, 0},
      {"bulk 32K x4, 4 pieces", 0, 32768, 4, 4, 0}, {"bulk 32K x4, 16 pieces", 0, 32768, 4, 16, 0},
      {"cp.async 32K x4, 1 warp", 1, 32768, 4, 0, 1}, {"cp.async 32K x4, 4 warps", 1, 32768, 4, 0, 4},
      {"cp.async 16K x8, 8 warps", 1, 16384, 8, 0, 8},
      {"bulk 64K x3 stages", 0, 65536, 3, 1, 0},     {"bulk 48K x4 stages", 0, 49152, 4, 1, 0},
      {"bulk 96K x2 stages", 0, 98304, 2, 1, 0},     {"bulk 64K x3, 2 pieces", 0, 65536, 3, 2, 0},
      {"bulk 32K x4, test_wait spin", 0, 32768, 4, 1, 0, 1}, {"bulk 16K x8, test_wait spin", 0, 16384, 8, 1, 0, 1},
      {"bulk 32K x4, try_wait 20 ns hint", 0, 32768, 4, 1, 0, 2},
  };
  {  // ~0.5 s of work first: the SM clock ramps up from idle only under load
    CHECK(cudaEventRecord(a));
    float ms = 0;
    while (ms < 500) {
      for (int i = 0; i < 20; ++i) ingest<<<sms, 64, 32768 * 4>>>(src, 32768, 4, chunks, 0, 1, 0, 0);
      CHECK(cudaEventRecord(b));
      CHECK(cudaEventSynchronize(b));
      CHECK(cudaEventElapsedTime(&ms, a, b));
    }
  }
  std::printf("l2-ingest | config | CTAs | GB/s per SM | GB/s total | us\n");
  for (const Config& c : configs)
    for (int ctas : {1, sms}) {
      const int threads = (c.mode == 0 ? 2 : c.warps + 1) * 32;
      const size_t smem = size_t(c.chunk) * c.stages;
      float best = 1e30f;
      for (int rep = 0; rep < 5; ++rep) {
        CHECK(cudaEventRecord(a));
        ingest<<<ctas, threads, smem>>>(src, c.chunk, c.stages, chunks, c.mode, c.pieces, c.warps, c.wait_kind);
        CHECK(cudaEventRecord(b));
        CHECK(cudaEventSynchronize(b));
        CHECK(cudaGetLastError());
        float ms = 0;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        if (rep > 0 && ms < best) best = ms;
      }
      const double bytes = double(c.chunk) * chunks;
      std::printf("l2-ingest | %s | %d | %.1f | %.0f | %.1f\n", c.what, ctas, bytes / (best * 1e-3) / 1e9,
                  bytes * ctas / (best * 1e-3) / 1e9, best * 1e3);
    }
  return 0;
}
