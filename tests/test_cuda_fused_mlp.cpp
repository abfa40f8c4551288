// kiln.FusedMLP's CUDA kernel (cuda.f16.fused_mlp) against a float64 reference: each tactic forced in turn
// (rows64, cluster8, per-layer cuBLASLt) at M = 1, 7, 64, 1000, 8192, 2 and 3 layers, float16 weights with
// float32 and float16 IO, random normal data, outputs poisoned with NaN before every run; the course MLP's
// own weights (models/mlp.onnx); and the op harness path (pack/tune/create as an engine does).
// Needs a GPU: skips without one unless KILN_TEST_CUDA=require (the "gpu" label) makes that a failure.
//
// KILN_FMLP_BENCH=1 also prints a timing table for the course MLP (CUDA graph replays over rotating inputs)
// and what tune() picks at each M.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>

#include "op_harness.h"
#include "ops/float16.h"
#include "test_util.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/fused_mlp.h"
#include "onnx/importer.h"
#endif

namespace kiln {
namespace {

struct Mlp {
  int k0 = 0;
  std::vector<int> n;
  std::vector<std::string> acts;
  std::vector<std::vector<double>> w, b;  // float16-exact values, W [N,K]
};

Mlp random_mlp(int k0, std::vector<int> n, std::vector<std::string> acts, uint64_t seed) {
  Mlp m{k0, std::move(n), std::move(acts), {}, {}};
  std::mt19937_64 rng(seed);
  int k = k0;
  for (int nn : m.n) {
    std::normal_distribution<double> wd(0.0, 1.0 / std::sqrt(double(k))), bd(0.0, 0.1);
    std::vector<double> w(size_t(nn) * k), b(nn);
    for (auto& v : w) v = round_to_half(wd(rng));
    for (auto& v : b) v = round_to_half(bd(rng));
    m.w.push_back(std::move(w));
    m.b.push_back(std::move(b));
    k = nn;
  }
  return m;
}

std::string joined_acts(const Mlp& m) {
  std::string s;
  for (size_t i = 0; i < m.acts.size(); ++i) s += (i ? "," : "") + m.acts[i];
  return s;
}

test::OpCase mlp_case(const Mlp& m, int64_t rows, DataType io, DataType weights = DataType::kFloat16) {
  test::OpCase c;
  c.op_type = "FusedMLP";
  c.domain = "kiln";
  c.opset = 1;
  c.precision = weights == DataType::kFloat16 ? "fp16" : "fp32";
  c.attr("activations", joined_acts(m));
  c.inputs.push_back(test::input({rows, m.k0}, io));
  int k = m.k0;
  for (size_t i = 0; i < m.n.size(); ++i) {
    c.inputs.push_back(test::constant(weights, {m.n[i], k}, m.w[i]));
    c.inputs.push_back(test::constant(weights, {m.n[i]}, m.b[i]));
    k = m.n[i];
  }
  if (weights == DataType::kFloat16) c.tolerance = test::kFloat16Tolerance;
  return c;
}

// The one-node graph with its output typed as shape inference would (make_graph leaves it open).
Graph mlp_graph(const Mlp& m, int64_t rows, DataType io) {
  Graph g = test::make_graph(mlp_case(m, rows, io));
  Value& y = g.values[g.nodes[0].outputs[0]];
  y.dtype = io;
  y.rank_known = true;
  y.shape = {rows, m.n.back()};
  y.dim_params.assign(2, "");
  return g;
}

double act(const std::string& a, double x) {
  if (a == "Relu") return x > 0 ? x : 0;
  if (a == "Tanh") return std::tanh(x);
  if (a == "Sigmoid") return 1 / (1 + std::exp(-x));
  if (a == "LeakyRelu") return x > 0 ? x : 0.01 * x;
  return x;
}

std::vector<double> reference(const Mlp& m, const std::vector<float>& x, int64_t rows) {
  std::vector<double> h(x.begin(), x.end()), next;
  int k = m.k0;
  for (size_t l = 0; l < m.n.size(); ++l) {
    const int n = m.n[l];
    next.assign(size_t(rows) * n, 0.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int j = 0; j < n; ++j) {
        double acc = m.b[l][j];
        const double* hr = &h[size_t(r) * k];
        const double* wr = &m.w[l][size_t(j) * k];
        for (int q = 0; q < k; ++q) acc += hr[q] * wr[q];
        next[size_t(r) * n + j] = act(m.acts[l], acc);
      }
    h.swap(next);
    k = n;
  }
  return h;
}

std::vector<float> random_normal(size_t n, uint64_t seed, bool to_half) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = d(rng);
    if (x == 0.f) x = 0.5f;
    if (to_half) x = static_cast<float>(round_to_half(x));
  }
  return v;
}

#ifdef KILN_WITH_CUDA

constexpr const char* kKernel = "cuda.f16.fused_mlp";

// Forced tactics (kiln_tactic_data): rows64 only, wg64 only (sm_90), cluster8 for every M, per-layer cuBLASLt
// (heuristic).
const std::vector<int64_t> kRows64{1, 0}, kWg64{2, 0}, kCluster8{1, int64_t(1) << 40}, kPerLayer{0, 0};

struct Dev {
  void* p = nullptr;
  explicit Dev(size_t bytes) { EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(bytes, 256)), cudaSuccess); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

// One kernel instance over a graph made from the case, as an engine would hold it (constants uploaded).
struct Instance {
  Graph g;
  Node node;
  std::vector<std::unique_ptr<Dev>> consts;
  std::vector<const void*> in_ptrs;
  std::unique_ptr<cuda::CudaKernel> kernel;
  DataType io = DataType::kFloat32;
  int k0 = 0, n_out = 0;

  Status make(const Mlp& m, DataType io_dt, const std::vector<int64_t>* tactic, cudaStream_t stream,
              int64_t tune_m = 0) {
    io = io_dt;
    k0 = m.k0;
    n_out = m.n.back();
    g = mlp_graph(m, 1, io);
    const cuda::KernelDef* def = cuda::KernelRegistry::instance().find(kKernel);
    if (!def) return Status(StatusCode::kNotFound, "no kernel " + std::string(kKernel));
    Status s = def->supports(g.nodes[0], g);
    if (!s.is_ok()) return s;
    auto dev = cuda::current_device();
    if (!dev.is_ok()) return dev.status();
    if (tactic) g.nodes[0].attrs.set(cuda::kTacticDataAttr, *tactic);
    if (tune_m > 0) {  // what a build with opt = max = tune_m records
      std::vector<TensorDesc> in = descs(tune_m), out = {{io, {tune_m, n_out}}};
      std::vector<TensorDesc> in1 = descs(1), out1 = {{io, {1, n_out}}};
      cuda::TuneContext tc{in1, in, in, out1, out, out, *dev, stream, nullptr, false};
      s = def->tune(g.nodes[0], g, tc);
      if (!s.is_ok()) return s;
    }
    node = g.nodes[0];
    cuda::KernelInit init{node, g, {}, {}, *dev};
    in_ptrs.assign(node.inputs.size(), nullptr);
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Value& v = g.values[node.inputs[i]];
      const Tensor* t = v.constant ? &*v.constant : nullptr;
      if (t) {
        consts.push_back(std::make_unique<Dev>(t->nbytes()));
        cudaMemcpy(consts.back()->p, t->raw(), t->nbytes(), cudaMemcpyHostToDevice);
        in_ptrs[i] = consts.back()->p;
      }
      init.constants.push_back(t);
      init.device_constants.push_back(in_ptrs[i]);
    }
    auto k = def->create(init);
    if (!k.is_ok()) return k.status();
    kernel = std::move(*k);
    return Status::ok();
  }

  std::vector<TensorDesc> descs(int64_t rows) const {
    std::vector<TensorDesc> d{{io, {rows, k0}}};
    for (size_t i = 1; i < g.nodes[0].inputs.size(); ++i) {
      const Value& v = g.values[g.nodes[0].inputs[i]];
      d.push_back({v.dtype, v.shape});
    }
    return d;
  }
};

std::vector<uint8_t> to_io(const std::vector<float>& x, DataType io) {
  std::vector<uint8_t> out(x.size() * dtype_size(io));
  for (size_t i = 0; i < x.size(); ++i) {
    if (io == DataType::kFloat16) {
      const uint16_t h = double_to_half(x[i]);
      std::memcpy(&out[i * 2], &h, 2);
    } else {
      std::memcpy(&out[i * 4], &x[i], 4);
    }
  }
  return out;
}

// Runs rows through the instance (outputs poisoned with NaN, plus a guard zone that must stay untouched).
std::vector<float> run(Instance& inst, const std::vector<float>& x, int64_t rows, cudaStream_t stream) {
  const size_t es = dtype_size(inst.io), y_bytes = size_t(rows) * inst.n_out * es, guard = 256;
  Status s = inst.kernel->reshape(inst.descs(rows), {{inst.io, {rows, inst.n_out}}});
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  Dev dx(x.size() * es), dy(y_bytes + guard), ws(inst.kernel->workspace_bytes());
  auto xb = to_io(x, inst.io);
  cudaMemcpy(dx.p, xb.data(), xb.size(), cudaMemcpyHostToDevice);
  cudaMemset(dy.p, 0xFF, y_bytes + guard);  // NaN in float32 and float16
  std::vector<const void*> in = inst.in_ptrs;
  in[0] = dx.p;
  void* out[1] = {dy.p};
  s = inst.kernel->enqueue(in.data(), out, ws.p, stream);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  std::vector<uint8_t> yb(y_bytes + guard);
  cudaMemcpy(yb.data(), dy.p, yb.size(), cudaMemcpyDeviceToHost);
  for (size_t i = y_bytes; i < yb.size(); ++i)
    if (yb[i] != 0xFF) {
      ADD_FAILURE() << "wrote past Y's end (byte " << i - y_bytes << " of the guard)";
      break;
    }
  std::vector<float> y(size_t(rows) * inst.n_out);
  for (size_t i = 0; i < y.size(); ++i) {
    if (inst.io == DataType::kFloat16) {
      uint16_t h;
      std::memcpy(&h, &yb[i * 2], 2);
      y[i] = static_cast<float>(half_to_double(h));
    } else {
      std::memcpy(&y[i], &yb[i * 4], 4);
    }
  }
  return y;
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); }
  ~Stream() { cudaStreamDestroy(s); }
};

const char* tactic_name(const std::vector<int64_t>& t) {
  return t == kRows64 ? "rows64" : t == kWg64 ? "wg64" : t == kCluster8 ? "cluster8" : "per-layer";
}

void check_mlp(const Mlp& m, const std::vector<int64_t>& rows_list, const std::vector<const std::vector<int64_t>*>& tactics) {
  Stream stream;
  uint64_t seed = 100;
  for (DataType io : {DataType::kFloat32, DataType::kFloat16})
    for (const auto* tactic : tactics) {
      Instance inst;
      Status s = inst.make(m, io, tactic, stream.s);
      ASSERT_TRUE(s.is_ok()) << s.to_string();
      for (int64_t rows : rows_list) {
        const auto x = random_normal(size_t(rows) * m.k0, seed++, io == DataType::kFloat16);
        const auto y = run(inst, x, rows, stream.s);
        size_t nan = 0;
        for (float v : y) nan += std::isnan(v);
        const double err = test::rel_l2(y, reference(m, x, rows));
        EXPECT_EQ(nan, 0u) << tactic_name(*tactic) << " " << dtype_name(io) << " M=" << rows;
        EXPECT_LE(err, 1e-2) << tactic_name(*tactic) << " " << dtype_name(io) << " M=" << rows << " layers "
                             << m.n.size();
      }
    }
}

// Every tactic this GPU runs (wg64 needs compute capability 9.0).
std::vector<const std::vector<int64_t>*> all_tactics() {
  std::vector<const std::vector<int64_t>*> v{&kRows64, &kCluster8, &kPerLayer};
  if (cuda::fmlp_wg_available()) v.insert(v.begin() + 1, &kWg64);
  return v;
}
// The large-M tactics this GPU runs.
std::vector<const std::vector<int64_t>*> large_tactics() {
  std::vector<const std::vector<int64_t>*> v{&kRows64};
  if (cuda::fmlp_wg_available()) v.push_back(&kWg64);
  return v;
}

TEST(CudaFusedMlp, TwoLayers) {
  REQUIRE_GPU();
  check_mlp(random_mlp(784, {256, 10}, {"Relu", ""}, 1), {1, 7, 64, 1000}, all_tactics());
}

TEST(CudaFusedMlp, ThreeLayersCourseShape) {
  REQUIRE_GPU();
  check_mlp(random_mlp(784, {256, 128, 10}, {"Relu", "Relu", ""}, 2), {1, 7, 64, 1000}, all_tactics());
}

TEST(CudaFusedMlp, Batch8192) {
  REQUIRE_GPU();
  auto tactics = large_tactics();
  check_mlp(random_mlp(64, {128, 72}, {"Tanh", "Sigmoid"}, 4), {8192}, tactics);
  tactics.push_back(&kPerLayer);
  check_mlp(random_mlp(784, {256, 128, 10}, {"Relu", "Relu", ""}, 3), {8192}, tactics);
}

TEST(CudaFusedMlp, OddShapesAndActivations) {
  REQUIRE_GPU();
  // K not a multiple of 64, N not a multiple of 8 or 64, four layers, every activation.
  check_mlp(random_mlp(200, {40, 256, 24, 3}, {"LeakyRelu", "Tanh", "Sigmoid", "Relu"}, 5), {1, 7, 64, 1000},
            all_tactics());
  check_mlp(random_mlp(8, {8}, {""}, 6), {1, 33}, all_tactics());
}

TEST(CudaFusedMlp, RefusesWhatItCannotRun) {
  const cuda::KernelDef* def = cuda::KernelRegistry::instance().find(kKernel);
  ASSERT_NE(def, nullptr);
  Mlp wide = random_mlp(64, {300, 10}, {"Relu", ""}, 7);
  Graph g = mlp_graph(wide, 4, DataType::kFloat32);
  Status s = def->supports(g.nodes[0], g);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("at most 256"), std::string::npos) << s.to_string();
  Mlp odd = random_mlp(60, {32, 10}, {"Relu", ""}, 8);
  odd.k0 = 60;
  g = mlp_graph(odd, 4, DataType::kFloat32);
  s = def->supports(g.nodes[0], g);
  EXPECT_NE(s.message().find("multiple of 8"), std::string::npos) << s.to_string();
  // float32 weights are the float32 kernel's (per-layer only), not this one's.
  g = test::make_graph(mlp_case(random_mlp(64, {32, 10}, {"Relu", ""}, 9), 4, DataType::kFloat32, DataType::kFloat32));
  g.values[g.nodes[0].outputs[0]].dtype = DataType::kFloat32;
  s = def->supports(g.nodes[0], g);
  EXPECT_NE(s.message().find("runs float16 weights"), std::string::npos) << s.to_string();
  const cuda::KernelDef* f32 = cuda::KernelRegistry::instance().find("cuda.f32.fused_mlp");
  ASSERT_NE(f32, nullptr);
  EXPECT_TRUE(f32->supports(g.nodes[0], g).is_ok()) << f32->supports(g.nodes[0], g).to_string();
}

// The course MLP's own weights, Gemm by Gemm from models/mlp.onnx.
Mlp course_mlp() {
  auto g = import_onnx_file(test::source_path("models/mlp.onnx"));
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  Mlp m;
  for (const Node& n : g->nodes) {
    if (n.op_type != "Gemm") continue;
    const Tensor& w = *g->values[n.inputs[1]].constant;
    const Tensor& b = *g->values[n.inputs[2]].constant;
    const bool tb = n.attrs.get_int("transB", 0).value() != 0;
    const int N = static_cast<int>(tb ? w.shape[0] : w.shape[1]), K = static_cast<int>(tb ? w.shape[1] : w.shape[0]);
    if (m.n.empty()) m.k0 = K;
    std::vector<double> wv(size_t(N) * K), bv(N);
    for (int j = 0; j < N; ++j)
      for (int k = 0; k < K; ++k) wv[size_t(j) * K + k] = round_to_half(w.get_double(tb ? j * K + k : k * N + j));
    for (int j = 0; j < N; ++j) bv[j] = round_to_half(b.get_double(j));
    m.n.push_back(N);
    m.w.push_back(std::move(wv));
    m.b.push_back(std::move(bv));
    m.acts.push_back("");
  }
  // Relu follows every Gemm but the last in this model.
  for (size_t i = 0; i + 1 < m.acts.size(); ++i) m.acts[i] = "Relu";
  return m;
}

TEST(CudaFusedMlp, CourseModelWeights) {
  REQUIRE_GPU();
  const Mlp m = course_mlp();
  ASSERT_EQ(m.n, (std::vector<int>{256, 128, 10}));
  check_mlp(m, {1, 64, 1000}, all_tactics());
}

TEST(CudaFusedMlp, TunedThroughTheOpHarness) {
  // pack -> tune -> create -> reshape -> enqueue as an engine does, M = 64 then 1 and 1000 on one instance.
  test::OpCase c = mlp_case(random_mlp(784, {256, 128, 10}, {"Relu", "Relu", ""}, 10), 64, DataType::kFloat32);
  c.magnitude = 0.5;
  c.more_shapes = {{{1, 784}}, {{1000, 784}}};
  test::run_op_case(test::gpu_only(c));
  c.inputs[0].dtype = DataType::kFloat16;
  test::run_op_case(test::gpu_only(c));
}

TEST(CudaFusedMlp, Float32WeightsPerLayer) {
  // cuda.f32.fused_mlp (FP32/TF32 engines): per-layer cuBLASLt, tuned, against float64 at fp32 and tf32
  // tolerances; odd shapes and an activation cuBLASLt has no epilogue for.
  for (const char* precision : {"fp32", "tf32"}) {
    test::OpCase c = mlp_case(random_mlp(784, {256, 128, 10}, {"Relu", "Relu", ""}, 11), 64, DataType::kFloat32,
                              DataType::kFloat32);
    c.precision = precision;
    if (std::string(precision) == "tf32") c.tolerance = 1e-3;
    c.more_shapes = {{{1, 784}}, {{1000, 784}}};
    test::run_op_case(test::gpu_only(c));
    test::OpCase odd = mlp_case(random_mlp(30, {7, 5, 3}, {"Tanh", "LeakyRelu", ""}, 12), 9, DataType::kFloat32,
                                DataType::kFloat32);
    odd.precision = precision;
    if (std::string(precision) == "tf32") odd.tolerance = 1e-3;
    test::run_op_case(test::gpu_only(odd));
  }
}

// ---------------------------------------------------------------------------------------------------------
// KILN_FMLP_BENCH=1: the course MLP, each tactic, CUDA graph of 4 enqueues over 4 input buffers (104 MB of
// float32 input at M = 8192: more than L2), median of 7 timings of 50 graph replays.

// Median over reps of body()'s stream time in ms, each rep between two events.
double median_event_ms(cudaStream_t stream, int reps, const std::function<void()>& body) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int rep = 0; rep < reps; ++rep) {
    cudaEventRecord(a, stream);
    body();
    cudaEventRecord(b, stream);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

double bench_us(Instance& inst, int64_t rows, cudaStream_t stream) {
  const size_t es = dtype_size(inst.io);
  EXPECT_TRUE(inst.kernel->reshape(inst.descs(rows), {{inst.io, {rows, inst.n_out}}}).is_ok());
  constexpr int kBufs = 4;
  std::vector<std::unique_ptr<Dev>> xs;
  auto x = to_io(random_normal(size_t(rows) * inst.k0, 77, inst.io == DataType::kFloat16), inst.io);
  for (int i = 0; i < kBufs; ++i) {
    xs.push_back(std::make_unique<Dev>(x.size()));
    cudaMemcpy(xs.back()->p, x.data(), x.size(), cudaMemcpyHostToDevice);
  }
  Dev y(size_t(rows) * inst.n_out * es), ws(inst.kernel->workspace_bytes());
  std::vector<const void*> in = inst.in_ptrs;
  void* out[1] = {y.p};
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  for (int i = 0; i < kBufs; ++i) {
    in[0] = xs[i]->p;
    Status s = inst.kernel->enqueue(in.data(), out, ws.p, stream);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  }
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int i = 0; i < 20; ++i) cudaGraphLaunch(exec, stream);
  const double ms = median_event_ms(stream, 7, [&] {
    for (int i = 0; i < 50; ++i) cudaGraphLaunch(exec, stream);
  });
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return ms * 1000.0 / (50.0 * kBufs);
}

TEST(CudaFusedMlp, Bench) {
  if (!std::getenv("KILN_FMLP_BENCH")) GTEST_SKIP() << "set KILN_FMLP_BENCH=1";
  REQUIRE_GPU();
  const Mlp m = course_mlp();
  Stream stream;
  {  // ~0.5 s of back-to-back work first, so that the clocks have ramped up before anything is timed
    Instance warm;
    ASSERT_TRUE(warm.make(m, DataType::kFloat32, &kPerLayer, stream.s).is_ok());
    for (int i = 0; i < 10; ++i) bench_us(warm, 8192, stream.s);
  }
  std::printf("fmlp-bench | IO | M | rows64 us | wg64 us | cluster8 us | per-layer cuBLASLt (heuristic) us | tune() picks\n");
  const std::vector<const std::vector<int64_t>*> tactics{&kRows64, &kWg64, &kCluster8, &kPerLayer};
  for (DataType io : {DataType::kFloat32, DataType::kFloat16})
    for (int64_t rows : {1, 16, 64, 256, 1024, 8192}) {
      double t[4] = {-1, -1, -1, -1};
      int i = 0;
      for (const auto* tactic : tactics) {
        if ((*tactic)[0] == 2 && !cuda::fmlp_wg_available()) {
          ++i;
          continue;
        }
        Instance inst;
        Status s = inst.make(m, io, tactic, stream.s);
        ASSERT_TRUE(s.is_ok()) << s.to_string();
        if (tactic != &kCluster8 || rows <= 1024) t[i] = bench_us(inst, rows, stream.s);
        ++i;
      }
      Instance tuned;
      Status s = tuned.make(m, io, nullptr, stream.s, rows);
      ASSERT_TRUE(s.is_ok()) << s.to_string();
      auto pick = tuned.node.attrs.get_string(cuda::kTacticAttr, "?");
      std::printf("fmlp-bench | %s | %lld | %.2f | %.2f | %.2f | %.2f | %s\n", std::string(dtype_name(io)).c_str(),
                  static_cast<long long>(rows), t[0], t[1], t[2], t[3], pick.is_ok() ? pick->c_str() : "?");
    }
}

// KILN_FMLP_TRACE=1: where the cluster8 kernel's time goes at M = 1 (the course's batch-1 engines run it), from
// its trace stamps (FmlpParams::trace): median over 200 launches of each phase (thread 0 of the first CTA, SM
// cycles), the CTAs' entry skew and in-kernel time (globaltimer), against the launch-to-launch time of 50
// back-to-back launches and of a CUDA graph of them. The output is checked against float64 as everywhere.
TEST(CudaFusedMlp, Trace) {
  if (!std::getenv("KILN_FMLP_TRACE")) GTEST_SKIP() << "set KILN_FMLP_TRACE=1";
  REQUIRE_GPU();
  const Mlp m = course_mlp();
  Stream stream;
  Instance inst;  // for the uploaded weights and biases
  ASSERT_TRUE(inst.make(m, DataType::kFloat32, &kCluster8, stream.s).is_ok());
  ASSERT_TRUE(cuda::fmlp_prepare().is_ok());
  const auto x = random_normal(m.k0, 91, false);
  Dev dx(x.size() * 4), dy(m.n.back() * 4), dt(cuda::kFmlpTraceSlots * 8);
  cudaMemcpy(dx.p, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  cuda::FmlpParams p;
  p.x = dx.p;
  p.y = dy.p;
  p.y_f32 = true;
  p.m = 1;
  p.layers = static_cast<int>(m.n.size());
  int k = m.k0;
  for (int l = 0; l < p.layers; ++l) {
    p.l[l].w = inst.in_ptrs[1 + 2 * l];
    p.l[l].b = inst.in_ptrs[2 + 2 * l];
    p.l[l].k = k;
    p.l[l].n = m.n[l];
    p.l[l].act = m.acts[l] == "Relu" ? Activation::kRelu : Activation::kNone;
    k = m.n[l];
  }
  // Launch-to-launch without the trace: 50 back to back on the stream, and as a CUDA graph.
  auto per_launch_us = [&](bool graph) {
    cudaGraphExec_t exec = nullptr;
    if (graph) {
      cudaGraph_t gr = nullptr;
      EXPECT_EQ(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
      for (int i = 0; i < 50; ++i) EXPECT_TRUE(cuda::launch_fmlp_small(p, true, stream.s).is_ok());
      EXPECT_EQ(cudaStreamEndCapture(stream.s, &gr), cudaSuccess);
      EXPECT_EQ(cudaGraphInstantiate(&exec, gr, 0), cudaSuccess);
      cudaGraphDestroy(gr);
    }
    auto fifty = [&] {
      if (graph) cudaGraphLaunch(exec, stream.s);
      else
        for (int i = 0; i < 50; ++i) EXPECT_TRUE(cuda::launch_fmlp_small(p, true, stream.s).is_ok());
    };
    for (int warm = 0; warm < 2; ++warm) fifty();
    const double ms = median_event_ms(stream.s, 10, fifty);
    if (exec) cudaGraphExecDestroy(exec);
    return ms * 1000.0 / 50;
  };
  const double stream_us = per_launch_us(false), graph_us = per_launch_us(true);

  p.trace = static_cast<unsigned long long*>(dt.p);
  constexpr int kRuns = 200;
  std::vector<std::vector<double>> deltas;  // per phase, per run (cycles)
  std::vector<double> in_kernel_ns, skew_ns, ghz;
  for (int run = 0; run < kRuns + 10; ++run) {
    cudaMemsetAsync(dt.p, 0, cuda::kFmlpTraceSlots * 8, stream.s);
    cudaMemsetAsync(dy.p, 0xFF, m.n.back() * 4, stream.s);
    ASSERT_TRUE(cuda::launch_fmlp_small(p, true, stream.s).is_ok());
    std::vector<unsigned long long> t(cuda::kFmlpTraceSlots);
    ASSERT_EQ(cudaMemcpyAsync(t.data(), dt.p, t.size() * 8, cudaMemcpyDeviceToHost, stream.s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream.s), cudaSuccess);
    if (run == 0) {
      std::vector<float> y(m.n.back());
      cudaMemcpy(y.data(), dy.p, y.size() * 4, cudaMemcpyDeviceToHost);
      EXPECT_LE(test::rel_l2(y, reference(m, x, 1)), 1e-2);
    }
    if (run < 10) continue;
    int marks = 0;
    while (marks + 1 < cuda::kFmlpTraceSlots - cuda::kFmlpTraceMarks && t[cuda::kFmlpTraceMarks + marks + 1] != 0) ++marks;
    if (deltas.empty()) deltas.resize(marks);
    ASSERT_EQ(static_cast<int>(deltas.size()), marks);
    for (int i = 0; i < marks; ++i)
      deltas[i].push_back(double(t[cuda::kFmlpTraceMarks + i + 1] - t[cuda::kFmlpTraceMarks + i]));
    unsigned long long e0 = ~0ull, e1 = 0, x1 = 0;
    for (int r = 0; r < cuda::kFmlpCluster; ++r) {
      e0 = std::min(e0, t[cuda::kFmlpTraceEntry + r]);
      e1 = std::max(e1, t[cuda::kFmlpTraceEntry + r]);
      x1 = std::max(x1, t[cuda::kFmlpTraceExit + r]);
    }
    in_kernel_ns.push_back(double(x1 - e0));
    skew_ns.push_back(double(e1 - e0));
    const double ns0 = double(t[cuda::kFmlpTraceExit] - t[cuda::kFmlpTraceEntry]);
    ghz.push_back(ns0 > 0 ? double(t[cuda::kFmlpTraceMarks + marks] - t[cuda::kFmlpTraceMarks]) / ns0 : 0);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double clock = median(ghz);
  std::printf("fmlp-trace | cluster8, course MLP, M = 1, FP32 IO | launch to launch: %.2f us on the stream, %.2f us "
              "in a CUDA graph | in kernel (first CTA in to last out): %.2f us, CTA entry skew %.2f us, SM clock "
              "%.2f GHz\n", stream_us, graph_us, median(in_kernel_ns) / 1000, median(skew_ns) / 1000, clock);
  const int L = p.layers;
  for (size_t i = 0; i < deltas.size(); ++i) {
    std::string what;
    if (i == 0) what = "issue weight copies";
    else if (i == 1) what = "stage X";
    else if (i == 2) what = "cluster sync (start)";
    else {
      const int l = static_cast<int>(i - 3) / 5, step = static_cast<int>(i - 3) % 5;
      static const char* steps[] = {"weights landed", "MMA (warp 0)", "partials stored", "epilogue + DSMEM stores",
                                    "cluster sync"};
      what = "layer " + std::to_string(l) + ": " + steps[step];
      if (l >= L) what = "?";
    }
    const double c = median(deltas[i]);
    std::printf("fmlp-trace | %-34s | %8.0f cycles | %6.2f us\n", what.c_str(), c, clock > 0 ? c / clock / 1000 : 0);
  }
}

// KILN_FMLP_PROFILE=1: a few plain launches of each fused kernel for Nsight Compute (ncu -k regex:fmlp_).
TEST(CudaFusedMlp, Profile) {
  if (!std::getenv("KILN_FMLP_PROFILE")) GTEST_SKIP() << "set KILN_FMLP_PROFILE=1";
  REQUIRE_GPU();
  const Mlp m = course_mlp();
  Stream stream;
  for (auto [tactic, rows] : {std::pair{&kRows64, int64_t{8192}}, std::pair{&kWg64, int64_t{8192}},
                              std::pair{&kRows64, int64_t{1}}, std::pair{&kCluster8, int64_t{1}}}) {
    if ((*tactic)[0] == 2 && !cuda::fmlp_wg_available()) continue;
    Instance inst;
    ASSERT_TRUE(inst.make(m, DataType::kFloat32, tactic, stream.s).is_ok());
    for (int i = 0; i < 2; ++i) run(inst, random_normal(size_t(rows) * m.k0, 5, false), rows, stream.s);
  }
}

#endif  // KILN_WITH_CUDA

}  // namespace
}  // namespace kiln
