// kiln.FusedMLP against the float64 reference on every kernel. The CPU kernel has three tactics (direct at
// M = 1, onednn from M = 2, blocked only when forced); each case runs with the fixed rule and with each
// tactic forced (KILN_FUSED_MLP_TACTIC; *_generic are the hand-written tactics' non-AVX-512 loops), so all
// are checked whatever the CPU. The harness poisons outputs with NaN before each run and compares with a
// relative L2 of 1e-5; inputs are random, never zero.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>

#include "../op_harness.h"
#include "backends/cpu/cpu_kernel.h"

namespace kiln::test {
namespace {

// X [..., k0], then per layer W [N,K] and b [N] (random constants), activations joined by ','.
OpCase mlp(Dims x, const std::vector<int64_t>& widths, const std::string& acts, std::vector<float> alphas = {}) {
  OpCase c;
  c.op_type = "FusedMLP";
  c.domain = "kiln";
  c.opset = 1;
  int64_t k = x.back();
  c.inputs.push_back(input(std::move(x)));
  for (int64_t n : widths) {
    c.inputs.push_back(random_constant({n, k}));
    c.inputs.push_back(random_constant({n}));
    k = n;
  }
  c.attr("activations", acts);
  if (alphas.empty()) alphas.assign(widths.size(), 0.2f);
  c.attr("activation_alphas", alphas);
  c.magnitude = 1.0;
  // The CUDA kernel lands separately (issue 8, GPU side): its cases run whenever it is registered, but
  // until then a GPU test run must not fail for want of one.
  c.require_cuda_kernel = false;
  return c;
}

// Sets the calling thread's OpenMP team size (what the CPU backend does per context) for a scope.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n) : old_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ScopedThreads() { omp_set_num_threads(old_); }

 private:
  int old_;
};

void run_tactic(const OpCase& c, const char* tactic) {
  SCOPED_TRACE(std::string("KILN_FUSED_MLP_TACTIC=") + tactic);
  ScopedEnv env("KILN_FUSED_MLP_TACTIC", tactic);
  const CaseReport r = run_op_case(c);
  EXPECT_EQ(r.kernels_run, std::vector<std::string>{"cpu.f32.fused_mlp"});
}

// Runs c with the fixed rule ("") and each tactic forced; the CPU kernel must run every time. The blocked
// tactic also runs on 1 and 3 threads (ragged shares).
void run_all_tactics(const OpCase& c) {
  for (const char* tactic : {"", "direct", "direct_generic", "blocked", "blocked_generic", "onednn"}) run_tactic(c, tactic);
  for (int threads : {1, 3}) {
    SCOPED_TRACE("threads=" + std::to_string(threads));
    ScopedThreads t(threads);
    run_tactic(c, "blocked");
  }
}

// The kernel run directly (as the backend does), for bit-level comparisons between runs.
class MlpRunner {
 public:
  explicit MlpRunner(const OpCase& c) : graph_(make_graph(c)) {
    const auto* def = cpu::KernelRegistry::instance().find("cpu.f32.fused_mlp");
    if (!def) throw std::runtime_error("cpu.f32.fused_mlp is not registered");
    const Node& n = graph_.nodes[0];
    auto shared = def->prepare(n, graph_);
    if (!shared.is_ok()) throw std::runtime_error(shared.status().to_string());
    cpu::KernelInit init{n, graph_, {}, std::move(shared).value()};
    for (int v : n.inputs) init.constants.push_back(graph_.is_constant(v) ? &*graph_.values[v].constant : nullptr);
    auto k = def->create(init);
    if (!k.is_ok()) throw std::runtime_error(k.status().to_string());
    kernel_ = std::move(k).value();
    k0_ = graph_.values[n.inputs[0]].shape.back();
    n_out_ = graph_.values[n.inputs[n.inputs.size() - 2]].shape[0];
  }

  // Y for rows of x (M = x.size() / K), NaN-poisoned before the run.
  std::vector<float> run(const std::vector<float>& x) {
    const int64_t m = static_cast<int64_t>(x.size()) / k0_;
    std::vector<float> y(static_cast<size_t>(m * n_out_), std::numeric_limits<float>::quiet_NaN());
    const Status s = kernel_->reshape({{DataType::kFloat32, {m, k0_}}}, {{DataType::kFloat32, {m, n_out_}}});
    if (!s.is_ok()) throw std::runtime_error(s.to_string());
    std::vector<const void*> in(graph_.nodes[0].inputs.size(), nullptr);
    in[0] = x.data();
    void* out[1] = {y.data()};
    const Status r = kernel_->run(in.data(), out);
    if (!r.is_ok()) throw std::runtime_error(r.to_string());
    return y;
  }

 private:
  Graph graph_;
  std::unique_ptr<cpu::CpuKernel> kernel_;
  int64_t k0_ = 0, n_out_ = 0;
};

std::vector<float> random_rows(int64_t m, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.125f, 1.f);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (auto& v : x) v = rng() % 2 ? u(rng) : -u(rng);
  return x;
}

bool same_bits(const std::vector<float>& a, const float* b, size_t count) {
  return std::memcmp(a.data(), b, count * sizeof(float)) == 0;
}

TEST(OpFusedMlp, TwoAndThreeLayersOverBatchSizes) {
  for (int64_t m : {1, 3, 17, 64, 300}) {
    SCOPED_TRACE("M=" + std::to_string(m));
    run_all_tactics(mlp({m, 40}, {33, 7}, "Relu,"));
    run_all_tactics(mlp({m, 97}, {70, 129, 10}, "Relu,Relu,"));
  }
}

TEST(OpFusedMlp, EachActivation) {
  for (const char* act : {"", "Relu", "LeakyRelu", "Sigmoid", "Tanh"}) {
    SCOPED_TRACE(act);
    const std::string a(act);
    run_all_tactics(mlp({5, 50}, {66, 19}, a + "," + a));
  }
}

TEST(OpFusedMlp, OddSizesAndWidePanels) {
  // K and N not multiples of 16, N across several 64-column panels with a ragged last one, N < 16.
  run_all_tactics(mlp({6, 3}, {1, 5, 2}, "Tanh,LeakyRelu,Sigmoid", {0.01f, 0.3f, 0.01f}));
  run_all_tactics(mlp({9, 201}, {150, 65, 17}, "Relu,Relu,"));
  run_all_tactics(mlp({2, 784}, {256, 128, 10}, "Relu,Relu,"));  // the course MLP's shape
}

TEST(OpFusedMlp, RankThreeAndDynamicBatch) {
  OpCase r3 = mlp({2, 3, 24}, {31, 8}, "Relu,");
  run_all_tactics(r3);
  EXPECT_EQ(run_op_case(r3).outputs.at(0).shape, (Dims{2, 3, 8}));
  // One kernel instance through new shapes: the tactic is chosen again per M (direct at 1, onednn otherwise).
  OpCase dyn = mlp({1, 80}, {48, 12}, "Relu,");
  dyn.more_shapes = {{{7, 80}}, {{300, 80}}, {{1, 80}}, {{0, 80}}, {{64, 80}}};
  run_all_tactics(dyn);
}

TEST(OpFusedMlp, CourseMlpAtTheIssueBatchSizes) {
  // 784 -> 256 -> 128 -> 10, ReLU: M around the 6-row tile and the 96-row block, and the batch goal's 8192.
  for (int64_t m : {1, 2, 7, 63, 64, 65, 97, 1000}) {
    SCOPED_TRACE("M=" + std::to_string(m));
    run_all_tactics(mlp({m, 784}, {256, 128, 10}, "Relu,Relu,"));
  }
  ScopedThreads t(4);
  run_tactic(mlp({8192, 784}, {256, 128, 10}, "Relu,Relu,"), "");
}

TEST(OpFusedMlp, BlockedOddSizesAndActivations) {
  // K and N off the vector width, ragged panels and tiles, no activation on a hidden layer, > 2 layers.
  for (int64_t m : {2, 5, 6, 13, 191}) {
    SCOPED_TRACE("M=" + std::to_string(m));
    run_all_tactics(mlp({m, 37}, {129, 17, 65, 3}, ",Relu,LeakyRelu,"));
    run_all_tactics(mlp({m, 1}, {200, 1}, "Tanh,Sigmoid"));
  }
}

TEST(OpFusedMlp, BlockedBitsDoNotDependOnThreadsOrBatch) {
  // Each output row is computed the same way wherever it falls (tile, block, thread share), so the bits are
  // the same for any thread count and any M that contains the row. Direct (M = 1) rounds differently.
  ScopedEnv env("KILN_FUSED_MLP_TACTIC", "");
  const OpCase c = mlp({1, 784}, {256, 128, 10}, "Relu,Relu,");
  MlpRunner runner(c);
  const std::vector<float> x = random_rows(1000, 784, 11);
  std::vector<float> one;
  {
    ScopedThreads t(1);
    one = runner.run(x);
  }
  for (float v : one) ASSERT_FALSE(std::isnan(v));
  for (int threads : {2, 3, 4, 7}) {
    ScopedThreads t(threads);
    EXPECT_TRUE(same_bits(one, runner.run(x).data(), one.size())) << threads << " threads";
  }
  for (int64_t m : {2, 7, 65, 97, 500}) {  // the first m rows alone
    const std::vector<float> part(x.begin(), x.begin() + m * 784);
    EXPECT_TRUE(same_bits(runner.run(part), one.data(), static_cast<size_t>(m * 10))) << "M=" << m;
  }
}

TEST(OpFusedMlp, BlockedLoopOrdersGiveTheSameBits) {
  // Benchmark knobs: KILN_FUSED_MLP_KCHUNK (panel-outer with K in chunks) and KILN_FUSED_MLP_TILE=12x32
  // against the default (tile-outer, 6 x 64 tiles).
  const OpCase c = mlp({1, 300}, {130, 64, 10}, "Relu,,Relu");
  const std::vector<float> x = random_rows(200, 300, 5);
  ScopedEnv tactic("KILN_FUSED_MLP_TACTIC", "blocked");
  std::vector<float> tile_outer;
  {
    ScopedEnv order("KILN_FUSED_MLP_KCHUNK", "0");
    tile_outer = MlpRunner(c).run(x);
  }
  for (const char* chunk : {"7", "128"}) {
    ScopedEnv order("KILN_FUSED_MLP_KCHUNK", chunk);
    EXPECT_TRUE(same_bits(MlpRunner(c).run(x), tile_outer.data(), tile_outer.size())) << "chunks of " << chunk;
  }
  ScopedEnv tall("KILN_FUSED_MLP_TILE", "12x32");
  EXPECT_TRUE(same_bits(MlpRunner(c).run(x), tile_outer.data(), tile_outer.size())) << "12 x 32 tiles";
  const std::vector<float> odd = random_rows(37, 300, 6);  // 3 tiles of 12 and one row
  const std::vector<float> tall_odd = MlpRunner(c).run(odd);
  ScopedEnv wide("KILN_FUSED_MLP_TILE", "6x64");
  EXPECT_TRUE(same_bits(MlpRunner(c).run(odd), tall_odd.data(), tall_odd.size())) << "37 rows";
}

TEST(OpFusedMlp, TacticRuleIsFixed) {
  // The same engine gives the same bits in every process: the tactic follows M only, never a timing.
  ScopedEnv env("KILN_FUSED_MLP_TACTIC", "");
  const OpCase c = mlp({1, 784}, {256, 128, 10}, "Relu,Relu,");
  const std::vector<float> x = random_rows(64, 784, 3);
  MlpRunner a(c), b(c);
  EXPECT_TRUE(same_bits(a.run(x), b.run(x).data(), 640));
  const std::vector<float> row(x.begin(), x.begin() + 784);
  EXPECT_TRUE(same_bits(a.run(row), b.run(row).data(), 10));
}

TEST(OpFusedMlp, ReferenceRefusesPackedLayout) {
  OpCase c = mlp({2, 8}, {4, 3}, "Relu,");
  c.attr("weight_layout", std::string("cpu.panel64"));
  EXPECT_FALSE(reference_op(c).is_ok());
  // Shapes still infer: a packed layout keeps W's logical shape.
  std::vector<TensorDesc> out;
  ASSERT_TRUE(infer_op(c, &out).is_ok());
  EXPECT_EQ(out.at(0).shape, (Dims{2, 3}));
}

TEST(OpFusedMlp, BadTacticNameIsAnError) {
  ScopedEnv env("KILN_FUSED_MLP_TACTIC", "fastest");
  const auto* k = cpu::KernelRegistry::instance().find("cpu.f32.fused_mlp");
  ASSERT_NE(k, nullptr);
  Graph g = make_graph(mlp({2, 8}, {4, 3}, "Relu,"));
  auto r = k->prepare(g.nodes[0], g);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("KILN_FUSED_MLP_TACTIC"), std::string::npos) << r.status().to_string();
}

}  // namespace
}  // namespace kiln::test
