// The batch-1 floor: how long one core takes to stream the MLP's FP32 weights (940,584 bytes) from its L2.
//
//   bench_l2_stream [Google Benchmark flags]
//
// A sum reduction over a float buffer with 512-bit loads, 8 independent accumulators (enough to keep two
// loads a cycle in flight behind the add latency), repeated over the same buffer so it stays in L2 after the
// first pass. A batch-1 forward pass must read every weight once, so this time is the floor for it on one
// core. Also run at a quarter of the size (clearly L2-resident on any core with >= 1 MiB of L2) and at 8x
// (past L2) for context. The buffer holds random normal values, not zeros.
#include "iteration_stats.h"

#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

constexpr int64_t kWeightBytes = 235146 * 4;  // models/mlp.onnx: 235,146 float32 parameters

__attribute__((target("avx512f"))) float sum_avx512(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    a4 = _mm512_add_ps(a4, _mm512_loadu_ps(p + i + 64));
    a5 = _mm512_add_ps(a5, _mm512_loadu_ps(p + i + 80));
    a6 = _mm512_add_ps(a6, _mm512_loadu_ps(p + i + 96));
    a7 = _mm512_add_ps(a7, _mm512_loadu_ps(p + i + 112));
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(m, p + i));
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                 _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  alignas(64) float lanes[16];  // (_mm512_reduce_add_ps trips a false -Wuninitialized in GCC 12's header)
  _mm512_store_ps(lanes, s);
  float total = 0;
  for (float x : lanes) total += x;
  return total;
}

void BM_l2_stream(benchmark::State& state) {
  const int64_t bytes = state.range(0);
  const int64_t n = bytes / 4;
  // 64-byte aligned, like a packed weight buffer.
  float* buf = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>((n * 4 + 63) / 64 * 64)));
  std::mt19937 rng(123);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t i = 0; i < n; ++i) buf[i] = nd(rng);
  for (int w = 0; w < 20; ++w) benchmark::DoNotOptimize(sum_avx512(buf, n));  // bring it into L2
  kiln_bench::IterationStats stats;
  float acc = 0;
  for (auto _ : state) stats.time(state, [&] { acc += sum_avx512(buf, n); });
  benchmark::DoNotOptimize(acc);
  stats.report(state);
  state.counters["bytes"] = static_cast<double>(bytes);
  state.SetBytesProcessed(state.iterations() * bytes);
  std::free(buf);
}

BENCHMARK(BM_l2_stream)
    ->ArgName("bytes")
    ->Arg(kWeightBytes)
    ->Arg(kWeightBytes / 4)
    ->Arg(kWeightBytes * 8)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx512f")) {
    std::fprintf(stderr, "bench_l2_stream: this CPU has no AVX-512F\n");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::AddCustomContext("weight_bytes", std::to_string(kWeightBytes));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
