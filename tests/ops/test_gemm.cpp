// Gemm and kiln.FusedGemm against the float64 reference; kernels run when registered (the harness skips
// Gemm when none exists yet).
#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase gemm(Dims a, Dims b, std::optional<Dims> c, bool trans_a = false, bool trans_b = false, int opset = 13) {
  OpCase g;
  g.op_type = "Gemm";
  g.opset = opset;
  g.inputs = {input(std::move(a)), random_constant(std::move(b))};
  if (c) g.inputs.push_back(random_constant(*c));
  if (trans_a) g.attr("transA", int64_t{1});
  if (trans_b) g.attr("transB", int64_t{1});
  return g;
}

TEST(OpGemm, Transposes) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t M = 5, K = 7, N = 3;
      Dims a = ta ? Dims{K, M} : Dims{M, K};
      Dims b = tb ? Dims{N, K} : Dims{K, N};
      EXPECT_EQ(run_op_case(gemm(a, b, Dims{N}, ta, tb)).outputs.at(0).shape, (Dims{M, N}));
    }
}

TEST(OpGemm, AlphaBeta) {
  OpCase c = gemm({4, 6}, {6, 5}, Dims{4, 5});
  c.attr("alpha", 0.5f).attr("beta", -2.f);
  run_op_case(c);
  OpCase t = gemm({6, 4}, {5, 6}, Dims{5}, true, true);
  t.attr("alpha", 3.f).attr("beta", 0.25f);
  run_op_case(t);
}

TEST(OpGemm, BiasShapes) {
  for (const Dims& cs : {Dims{3, 5}, Dims{5}, Dims{1, 5}, Dims{3, 1}, Dims{}, Dims{1}, Dims{1, 1}})
    run_op_case(gemm({3, 4}, {4, 5}, cs));
  run_op_case(gemm({3, 4}, {4, 5}, std::nullopt));                    // C absent (opset 11+)
  OpCase omitted_c = gemm({3, 4}, {4, 5}, std::nullopt);
  omitted_c.inputs.push_back(omitted());
  run_op_case(omitted_c);
  OpCase runtime_c = gemm({3, 4}, {4, 5}, std::nullopt);
  runtime_c.inputs.push_back(input({3, 5}));
  run_op_case(runtime_c);
  OpCase runtime_b = gemm({3, 4}, {4, 5}, Dims{5});
  runtime_b.inputs[1] = input({4, 5});
  run_op_case(runtime_b);
}

TEST(OpGemm, DynamicBatchAndOddSizes) {
  OpCase c = gemm({1, 784}, {128, 784}, Dims{128}, false, true);
  c.more_shapes = {{{7, 784}}, {{64, 784}}};
  run_op_case(c);
  run_op_case(gemm({13, 17}, {17, 19}, Dims{19}));
  run_op_case(gemm({0, 4}, {4, 5}, Dims{5}));
}

TEST(OpFusedGemm, ActivationsAndHighRankA) {
  for (const char* act : {"", "Relu", "LeakyRelu", "Sigmoid", "Tanh"}) {
    OpCase c = gemm({6, 8}, {5, 8}, Dims{5}, false, true);
    c.op_type = "FusedGemm";
    c.domain = "kiln";
    c.opset = 1;
    c.attr("activation", std::string(act)).attr("activation_alpha", 0.2f);
    run_op_case(c);
  }
  OpCase r3 = gemm({2, 3, 8}, {8, 5}, Dims{5});
  r3.op_type = "FusedGemm";
  r3.domain = "kiln";
  r3.opset = 1;
  EXPECT_EQ(run_op_case(r3).outputs.at(0).shape, (Dims{2, 3, 5}));
}

// Reduced precision (CUDA kernels pick the compute type from node.precision; CPU kernels run float32 and
// skip float16). tf32 rounds operands to 10 mantissa bits: 1e-3. float16 operands and output: 1e-2.
OpCase with_precision(OpCase c, const std::string& precision) {
  c.precision = precision;
  if (precision == "fp16") {
    for (auto& in : c.inputs)
      if (!in.omitted) in.dtype = DataType::kFloat16;
    c.tolerance = 1e-2;
  } else {
    c.tolerance = 1e-3;
  }
  return c;
}

OpCase fused(OpCase c, const char* act) {
  c.op_type = "FusedGemm";
  c.domain = "kiln";
  c.opset = 1;
  c.attr("activation", std::string(act)).attr("activation_alpha", 0.2f);
  return c;
}

TEST(OpGemm, Tf32AndFp16) {
  for (const char* p : {"tf32", "fp16"}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const int64_t M = 24, K = 40, N = 16;
        run_op_case(with_precision(gemm(ta ? Dims{K, M} : Dims{M, K}, tb ? Dims{N, K} : Dims{K, N}, Dims{N}, ta, tb), p));
      }
    for (const Dims& cs : {Dims{24, 16}, Dims{1, 16}, Dims{24, 1}, Dims{}}) {
      OpCase c = with_precision(gemm({24, 40}, {40, 16}, cs), p);
      c.attr("alpha", 0.5f).attr("beta", -1.5f);
      run_op_case(c);
    }
    OpCase runtime = gemm({8, 32}, {32, 24}, std::nullopt);  // runtime B and C
    runtime.inputs[1] = input({32, 24});
    runtime.inputs.push_back(input({24}));
    run_op_case(with_precision(runtime, p));
    OpCase dynamic = with_precision(gemm({1, 96}, {64, 96}, Dims{64}, false, true), p);
    dynamic.more_shapes = {{{9, 96}}, {{33, 96}}};
    run_op_case(dynamic);
    for (const char* act : {"Relu", "LeakyRelu", "Sigmoid", "Tanh"})
      run_op_case(with_precision(fused(gemm({12, 48}, {20, 48}, Dims{20}, false, true), act), p));
    OpCase r3 = with_precision(fused(gemm({2, 5, 32}, {32, 8}, Dims{8}), "Relu"), p);
    EXPECT_EQ(run_op_case(r3).outputs.at(0).shape, (Dims{2, 5, 8}));
  }
}

TEST(OpGemm, Errors) {
  Status s = infer_op(gemm({3, 4}, {5, 6}, std::nullopt));
  EXPECT_NE(s.to_string().find("inner dimensions differ"), std::string::npos) << s.to_string();
  s = infer_op(gemm({3, 4}, {4, 5}, Dims{2, 5}));
  EXPECT_NE(s.to_string().find("does not broadcast"), std::string::npos) << s.to_string();
  s = infer_op(gemm({2, 3, 4}, {4, 5}, std::nullopt));
  EXPECT_FALSE(s.is_ok());
  OpCase bad = gemm({3, 4}, {4, 5}, std::nullopt);
  bad.attr("activation", std::string("Relu"));
  s = check_op(bad);
  EXPECT_NE(s.message().find("Gemm: attribute 'activation' is not supported"), std::string::npos) << s.to_string();
  EXPECT_FALSE(check_op(gemm({3, 4}, {4, 5}, std::nullopt, false, false, 9)).is_ok());  // C required
}

}  // namespace
}  // namespace kiln::test
