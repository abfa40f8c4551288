// Device helpers shared by the fused MLP kernels (fused_mlp.cu: rows64 and cluster8, sm_90;
// fused_mlp_sm90a.cu: wg64, sm_90a): async copies, mbarriers, fragment conversion, activations.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "backends/cuda/fused_mlp.h"
#include "backends/cuda/gemm_elementwise.h"

namespace kiln::cuda::fmlp {

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ uint32_t pack_half2(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ uint32_t ld32(const __half* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Four 8x8 float16 matrices; lane l gives the row address of matrix l / 8 (row l % 8).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __half* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// Y's dtype is the engine's output dtype, independent of X's (host IO may hand float16 X to a float32 engine).
__device__ __forceinline__ void store_y(const FmlpParams& p, int64_t i, float v) {
  if (p.y_f32) static_cast<float*>(p.y)[i] = v;
  else static_cast<__half*>(p.y)[i] = __float2half_rn(v);
}

__device__ __forceinline__ float bias_at(const FmlpLayer& L, int col) {
  return col < L.n ? __half2float(static_cast<const __half*>(L.b)[col]) : 0.f;
}

// mbarriers (shared::cta) and the bulk copy that completes on one.
__device__ __forceinline__ void mbar_init(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_u32(bar)), "r"(parity)
        : "memory");
  } while (!done);
}
// Global -> shared bulk copy (bytes: a multiple of 16, both addresses 16-byte aligned), completing on bar.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_u32(dst)),
               "l"(src), "r"(bytes), "r"(smem_u32(bar))
               : "memory");
}
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Activations other than ReLU, out of line: the epilogues stay small (instruction-cache misses and branches
// were a large share of the first rows64 kernel's time; bench/GPU_NOTES.md).
static __device__ __noinline__ float activate_out_of_line(Activation act, float x, float alpha) {
  return activate(act, x, alpha);
}
template <int ACT>  // 0: none, 1: ReLU, 2: any (out of line)
__device__ __forceinline__ float epilogue_act(const FmlpLayer& L, float v) {
  if constexpr (ACT == 1) return activate(Activation::kRelu, v, 0.f);
  else if constexpr (ACT == 2) return activate_out_of_line(L.act, v, L.alpha);
  else return v;
}
// The activation class of a layer (the switch is per layer, not per value).
__device__ __forceinline__ int act_class(Activation a) { return a == Activation::kNone ? 0 : a == Activation::kRelu ? 1 : 2; }

// A 16x16 A fragment (rows/cols as mma.sync's m16n8k16 and wgmma's per-warp m16 slice) from a float16 tile:
// ldmatrix; lane = 8q + r gives row r of matrix q. From a float32 tile: four 8-byte loads and conversions
// (rows g, g+8; columns 2t, 2t+8).
template <bool F32>
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const void* tile, int ld, int lane) {
  if constexpr (F32) {
    const float* x = static_cast<const float*>(tile) + (lane >> 2) * ld + 2 * (lane & 3);
    const float2 v0 = *reinterpret_cast<const float2*>(x), v1 = *reinterpret_cast<const float2*>(x + 8 * ld);
    const float2 v2 = *reinterpret_cast<const float2*>(x + 8), v3 = *reinterpret_cast<const float2*>(x + 8 * ld + 8);
    a[0] = pack_half2(v0.x, v0.y);
    a[1] = pack_half2(v1.x, v1.y);
    a[2] = pack_half2(v2.x, v2.y);
    a[3] = pack_half2(v3.x, v3.y);
  } else {
    const int q = lane >> 3, r = lane & 7;
    ldmatrix_x4(a, static_cast<const __half*>(tile) + (r + (q & 1) * 8) * ld + (q >> 1) * 8);
  }
}

}  // namespace kiln::cuda::fmlp
