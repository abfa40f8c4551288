// Build-time parts of the cuBLASLt GEMM kernels that need no GPU: pack() must keep the node's function
// (checked with the float64 reference before and after) while putting B in [N,K] and row-broadcast C into
// an [N] bias; supports() must refuse what the kernels cannot run, saying why.
#ifdef KILN_WITH_CUDA
#include <gtest/gtest.h>

#include <random>

#include "backends/cuda/cuda_kernel.h"
#include "ops/reference_eval.h"
#include "op_harness.h"

namespace kiln::test {
namespace {

OpCase gemm_case(Dims a, Dims b, std::optional<Dims> c, bool trans_b, DataType dt) {
  OpCase g;
  g.op_type = "Gemm";
  g.opset = 13;
  g.inputs = {input(std::move(a), dt), random_constant(std::move(b), dt)};
  if (c) g.inputs.push_back(random_constant(*c, dt));
  if (trans_b) g.attr("transB", int64_t{1});
  return g;
}

Graph typed_graph(const OpCase& c) {
  Graph g = make_graph(c);
  Value& y = g.values[g.nodes[0].outputs[0]];
  y.dtype = c.inputs[0].dtype;
  return g;
}

std::vector<double> evaluate(const Graph& g, const RefTensor& a) {
  auto out = evaluate_reference(g, {a});
  EXPECT_TRUE(out.is_ok()) << out.status().to_string();
  return out.is_ok() ? out->at(0).data : std::vector<double>{};
}

const cuda::KernelDef& kernel(const std::string& name) {
  const cuda::KernelDef* d = cuda::KernelRegistry::instance().find(name);
  EXPECT_NE(d, nullptr) << name;
  return *d;
}

TEST(CudaGemmPack, KeepsFunctionAndMakesTnLayout) {
  struct Case {
    Dims b;
    std::optional<Dims> c;
    bool trans_b;
    float alpha, beta;
    bool expect_bias;
  };
  const int64_t M = 3, K = 4, N = 5;
  const std::vector<Case> cases = {
      {{K, N}, Dims{N}, false, 1.f, 1.f, true},       {{N, K}, Dims{1, N}, true, 2.f, 0.5f, true},
      {{K, N}, Dims{}, false, 1.f, -1.f, true},       {{K, N}, Dims{1}, false, 1.f, 1.f, true},
      {{K, N}, Dims{M, N}, false, 0.5f, 2.f, false},  {{K, N}, Dims{M, 1}, false, 1.f, 1.f, false},
      {{K, N}, std::nullopt, false, 1.f, 1.f, false},
  };
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16}) {
    const std::string name = dt == DataType::kFloat32 ? "cuda.f32.gemm.cublaslt" : "cuda.f16.gemm.cublaslt";
    const cuda::KernelDef& kd = kernel(name);
    ASSERT_TRUE(kd.pack);
    for (const Case& cs : cases) {
      OpCase oc = gemm_case({M, K}, cs.b, cs.c, cs.trans_b, dt);
      oc.attr("alpha", cs.alpha).attr("beta", cs.beta);
      if (dt == DataType::kFloat16) oc.precision = "fp16";
      Graph g = typed_graph(oc);
      ASSERT_TRUE(kd.supports(g.nodes[0], g).is_ok()) << kd.supports(g.nodes[0], g).to_string();
      Graph packed = g;
      ASSERT_TRUE(kd.pack(packed.nodes[0], packed).is_ok());
      const Node& n = packed.nodes[0];
      EXPECT_EQ(n.attrs.get_int("transB", 0).value(), 1);
      EXPECT_EQ(packed.values[n.inputs[1]].shape, (Dims{N, K}));
      if (cs.expect_bias) {
        EXPECT_EQ(packed.values[n.inputs[2]].shape, (Dims{N}));
        EXPECT_EQ(packed.values[n.inputs[2]].dtype, dt);
        EXPECT_EQ(n.attrs.get_float("beta", 0.f).value(), 1.f);
      } else if (cs.c) {
        EXPECT_EQ(packed.values[n.inputs[2]].shape, *cs.c);
      }
      std::mt19937_64 rng(7);
      RefTensor a{dt, {M, K}, {}};
      for (int64_t i = 0; i < M * K; ++i) a.data.push_back(static_cast<double>(static_cast<int>(rng() % 17) - 8) / 8);
      const auto before = evaluate(g, a), after = evaluate(packed, a);
      ASSERT_EQ(before.size(), after.size());
      // beta*C is rounded to the dtype once when folded: allow that rounding.
      const double tol = dt == DataType::kFloat32 ? 1e-6 : 2e-3;
      for (size_t i = 0; i < before.size(); ++i)
        EXPECT_NEAR(after[i], before[i], tol * (1 + std::abs(before[i]))) << name << " element " << i;
    }
  }
}

TEST(CudaGemmPack, RuntimeWeightsStayAsTheyAre) {
  OpCase oc = gemm_case({3, 4}, {4, 5}, Dims{5}, false, DataType::kFloat32);
  oc.inputs[1] = input({4, 5});
  Graph g = typed_graph(oc);
  const cuda::KernelDef& kd = kernel("cuda.f32.gemm.cublaslt");
  ASSERT_TRUE(kd.pack(g.nodes[0], g).is_ok());
  EXPECT_EQ(g.nodes[0].attrs.get_int("transB", 0).value(), 0);
  EXPECT_EQ(g.values[g.nodes[0].inputs[2]].shape, (Dims{5}));  // C is still folded into the bias
}

TEST(CudaGemmSupports, DtypesAndPrecision) {
  Graph f32 = typed_graph(gemm_case({3, 4}, {4, 5}, Dims{5}, false, DataType::kFloat32));
  Graph f16 = typed_graph(gemm_case({3, 4}, {4, 5}, Dims{5}, false, DataType::kFloat16));
  const cuda::KernelDef& k32 = kernel("cuda.f32.gemm.cublaslt");
  const cuda::KernelDef& k16 = kernel("cuda.f16.gemm.cublaslt");
  EXPECT_TRUE(k32.supports(f32.nodes[0], f32).is_ok());
  f32.nodes[0].precision = "tf32";
  EXPECT_TRUE(k32.supports(f32.nodes[0], f32).is_ok());
  f32.nodes[0].precision = "fp16";
  Status s = k32.supports(f32.nodes[0], f32);
  EXPECT_NE(s.message().find("precision 'fp16'"), std::string::npos) << s.to_string();
  s = k32.supports(f16.nodes[0], f16);
  EXPECT_NE(s.message().find("float16"), std::string::npos) << s.to_string();
  f16.nodes[0].precision = "fp16";
  EXPECT_TRUE(k16.supports(f16.nodes[0], f16).is_ok());
  f16.values[f16.nodes[0].outputs[0]].dtype = DataType::kFloat32;  // mixed: float16 in, float32 out
  EXPECT_TRUE(k16.supports(f16.nodes[0], f16).is_ok());
  for (const char* name : {"cuda.f32.gemm.cublaslt.fused", "cuda.f16.gemm.cublaslt.fused", "cuda.f32.matmul.cublaslt",
                           "cuda.f16.matmul.cublaslt"})
    EXPECT_NE(cuda::KernelRegistry::instance().find(name), nullptr) << name;
}

// kiln.QGemm: the cuBLASLt kernel takes K and N multiples of 4 only (its int8 kernels' rule) and says which
// kernel runs the rest; pack() puts W in [N,K] without changing the function.
OpCase qgemm_case(int64_t K, int64_t N, bool trans_b) {
  OpCase c;
  c.domain = "kiln";
  c.op_type = "QGemm";
  std::vector<double> w(static_cast<size_t>(K * N)), ws(static_cast<size_t>(N), 0.003), bias(static_cast<size_t>(N));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<double>(static_cast<int>(i * 37 % 255) - 127);
  for (size_t j = 0; j < bias.size(); ++j) bias[j] = 0.25 * static_cast<double>(j) - 1;
  c.inputs = {input({3, K}, DataType::kInt8), constant(DataType::kInt8, trans_b ? Dims{N, K} : Dims{K, N}, w),
              constant(DataType::kFloat32, {N}, bias), constant(DataType::kFloat32, {N}, ws)};
  c.attr("a_scale", 0.02f).attr("y_scale", 0.05f).attr("activation", std::string("Relu"));
  if (trans_b) c.attr("transB", int64_t{1});
  return c;
}

TEST(CudaQGemm, SupportsAndPack) {
  const cuda::KernelDef& lt = kernel("cuda.int8.qgemm.cublaslt");
  const cuda::KernelDef& tiled = kernel("cuda.int8.qgemm.tiled");
  EXPECT_GT(lt.priority, tiled.priority);
  for (auto [K, N] : {std::pair<int64_t, int64_t>{30, 12}, {40, 10}, {40, 17}}) {
    Graph g = make_graph(qgemm_case(K, N, false));
    Status s = lt.supports(g.nodes[0], g);
    EXPECT_NE(s.message().find("multiples of 4"), std::string::npos) << K << "x" << N << ": " << s.to_string();
    EXPECT_NE(s.message().find("cuda.int8.qgemm.tiled"), std::string::npos) << s.to_string();
    EXPECT_TRUE(tiled.supports(g.nodes[0], g).is_ok()) << tiled.supports(g.nodes[0], g).to_string();
  }
  OpCase runtime_w = qgemm_case(32, 8, false);
  runtime_w.inputs[1] = input({32, 8}, DataType::kInt8);
  Graph rg = make_graph(runtime_w);
  EXPECT_NE(lt.supports(rg.nodes[0], rg).message().find("transB=1"), std::string::npos);
  for (bool trans_b : {false, true}) {
    const int64_t K = 64, N = 24;
    Graph g = make_graph(qgemm_case(K, N, trans_b));
    ASSERT_TRUE(lt.supports(g.nodes[0], g).is_ok()) << lt.supports(g.nodes[0], g).to_string();
    Graph packed = g;
    ASSERT_TRUE(lt.pack(packed.nodes[0], packed).is_ok());
    const Node& n = packed.nodes[0];
    EXPECT_EQ(n.attrs.get_int("transB", 0).value(), 1);
    EXPECT_EQ(packed.values[n.inputs[1]].shape, (Dims{N, K}));
    RefTensor a{DataType::kInt8, {3, K}, {}};
    for (int64_t i = 0; i < 3 * K; ++i) a.data.push_back(static_cast<double>(i * 29 % 255) - 127);
    EXPECT_EQ(evaluate(g, a), evaluate(packed, a));
  }
}

}  // namespace
}  // namespace kiln::test
#endif  // KILN_WITH_CUDA
