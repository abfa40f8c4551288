// Kiln's CPU engine timed exactly like the bare oneDNN chain in onednn_chain.cpp (same harness, same
// per-iteration timing, same random-normal input), so the two can be compared within one run without
// the CLI's loop in between. Engine: models/mlp.onnx with profile 1..8192 (opt 8192), as the course.
// Seven engines (arg "engine"): 0 "fused" (the default build with --noTF32: one kiln.FusedMLP layer, its tactic by the
// fixed rule: direct at batch 1, the oneDNN chain from 2), 1 "layers" (--disablePass=mlp_fusion: one oneDNN
// matmul per Gemm, Kiln's path before issue 8), 2 "fused_onednn_rows" (the fused layer with
// KILN_FUSED_MLP_TACTIC=onednn_rows: the chain on each thread's own slice of the rows) and 3 "bf16" (kiln
// build --bf16: the AVX512_BF16 direct kernel below 4 rows, the oneDNN chain in BF16 from there, AMX or
// AVX512_BF16 where present) and 4 "bf16_onednn_rows" (bf16 with the rows split over the threads: each
// thread converts and runs its own slice, the chain at every batch), 5 "tf32" (TF32 allowed, bf16x3 forced:
// the split-bf16 chain at every batch, KILN_FUSED_MLP_TACTIC=bf16x3, fused_mlp.cpp; unforced, tf32 runs as
// engine 0) and 6 "tf32_rows" (bf16x3 forced at every batch, rows split over the threads:
// KILN_FUSED_MLP_TACTIC=bf16x3_rows). Each at threads=1, 2, 4, 8 and all (the context's set_num_threads; 0 = all,
// i.e. OMP_NUM_THREADS or the cores). KILN_FUSED_MLP_TACTIC=direct|onednn set in the environment pins
// engine 0's tactic instead. E.g. the batch-8192 comparison:
//   bench_kiln_engine --benchmark_filter='batch:8192/' --benchmark_repetitions=10 \
//                     --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>

#include "iteration_stats.h"
#include "kiln/kiln.h"

namespace {

struct Ctx {
  std::unique_ptr<kiln::ExecutionContext> ctx;
  std::vector<float> x, y;
};

constexpr int kEngines = 7;
// [0] fused, [1] layers, [2] fused onednn_rows, [3] bf16, [4] bf16 onednn_rows, [5] tf32 bf16x3, [6] tf32 bf16x3_rows
std::shared_ptr<kiln::Engine> g_engines[kEngines];
std::map<std::tuple<int64_t, int64_t, int64_t>, Ctx> g_ctx;

Ctx& context(int64_t batch, int64_t threads, int64_t which) {
  Ctx& c = g_ctx[{batch, threads, which}];
  if (!c.ctx) {
    auto r = g_engines[which]->create_execution_context();
    if (!r.is_ok()) throw std::runtime_error(r.status().to_string());
    c.ctx = std::move(r).value();
    c.ctx->set_num_threads(static_cast<int>(threads));
    std::mt19937 rng(123);
    std::normal_distribution<float> nd;
    c.x.resize(static_cast<size_t>(batch * 784));
    for (auto& v : c.x) v = nd(rng);
    c.y.assign(static_cast<size_t>(batch * 10), 0.f);
    kiln::Status s = c.ctx->set_input_shape("input", {batch, 1, 28, 28});
    if (s.is_ok()) s = c.ctx->set_tensor_address("input", c.x.data());
    if (s.is_ok()) s = c.ctx->set_tensor_address("logits", c.y.data());
    if (!s.is_ok()) throw std::runtime_error(s.to_string());
  }
  return c;
}

// Args: batch, threads (0 = all), engine (0 = fused, 1 = per-layer, 2 = fused, rows split over threads, 3 = bf16,
// 4 = bf16, rows split over threads, 5 = tf32 in bf16x3, 6 = tf32 in bf16x3 with the rows split).
void BM_kiln(benchmark::State& state) {
  const int64_t batch = state.range(0);
  Ctx& c = context(batch, state.range(1), state.range(2));
  if (!c.ctx->execute().is_ok()) state.SkipWithError("execute failed");
  kiln_bench::IterationStats stats;
  for (auto _ : state) stats.time(state, [&] { (void)c.ctx->execute(); });
  benchmark::DoNotOptimize(c.y[0]);
  stats.report(state);
  state.counters["batch"] = static_cast<double>(batch);
  state.counters["threads"] = state.range(1) > 0 ? static_cast<double>(state.range(1)) : omp_get_max_threads();
}
BENCHMARK(BM_kiln)
    ->ArgNames({"batch", "threads", "engine"})
    ->ArgsProduct({{1, 64, 8192}, {1, 2, 4, 8, 0}, {0, 1, 2, 3, 4, 5, 6}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  std::string model = KILN_BENCH_DEFAULT_MODEL;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind("--model=", 0) == 0) model = argv[i] + 8;
  kiln::BuilderConfig cfg;
  cfg.profiles["input"] = {{1, 1, 28, 28}, {8192, 1, 28, 28}, {8192, 1, 28, 28}};
  const char* pinned = std::getenv("KILN_FUSED_MLP_TACTIC");
  const std::string pinned_tactic = pinned ? pinned : "";
  for (int which = 0; which < kEngines; ++which) {
    cfg.disabled_passes.clear();
    if (which == 1) cfg.disabled_passes = {"mlp_fusion"};
    cfg.bf16 = which == 3 || which == 4;
    cfg.tf32 = which == 5 || which == 6;
    // The fused layer reads KILN_FUSED_MLP_TACTIC when the engine is loaded: engines 2 and 4 split the rows,
    // 5 and 6 force bf16x3.
    const char* tactic = which == 2 || which == 4 ? "onednn_rows"
                         : which == 5             ? "bf16x3"
                         : which == 6             ? "bf16x3_rows"
                                                  : nullptr;
    auto built = kiln::build_engine_from_file(model, cfg);
    if (!built.is_ok()) {
      std::fprintf(stderr, "build failed: %s\n", built.status().to_string().c_str());
      return 1;
    }
    if (tactic) setenv("KILN_FUSED_MLP_TACTIC", tactic, 1);
    auto engine = kiln::Runtime().deserialize_engine(built->engine);
    if (tactic) {
      if (pinned) setenv("KILN_FUSED_MLP_TACTIC", pinned_tactic.c_str(), 1);
      else unsetenv("KILN_FUSED_MLP_TACTIC");
    }
    if (!engine.is_ok()) {
      std::fprintf(stderr, "load failed: %s\n", engine.status().to_string().c_str());
      return 1;
    }
    g_engines[which] = std::move(engine).value();
  }
  // What the fused layer chose at load (tactic and crossover), for the record.
  for (int which : {0, 5}) {
    std::string inspect = g_engines[which]->inspect_json();
    const auto at = inspect.find("layer_tactics");
    if (at != std::string::npos)
      benchmark::AddCustomContext(which ? "fused_mlp_tactic_tf32" : "fused_mlp_tactic",
                                  inspect.substr(at, inspect.find('}', at) - at + 1));
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
