#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase matmul(InputSpec a, InputSpec b, int opset = 13) {
  OpCase c;
  c.op_type = "MatMul";
  c.opset = opset;
  c.inputs = {std::move(a), std::move(b)};
  return c;
}

bool ran(const CaseReport& r, const std::string& name) {
  for (const auto& k : r.kernels_run) if (k == name) return true;
  return false;
}

TEST(OpMatMul, TwoD) {
  EXPECT_TRUE(ran(run_op_case(matmul(input({3, 4}), input({4, 5}))), "cpu.f32.matmul.onednn"));
  run_op_case(matmul(input({7, 13}), input({13, 11}), 9));
  run_op_case(matmul(input({1, 1}), input({1, 1}), 1));
  run_op_case(matmul(input({64, 257}), input({257, 129})));
}

TEST(OpMatMul, Batched) {
  run_op_case(matmul(input({2, 3, 4}), input({2, 4, 5})));
  run_op_case(matmul(input({2, 3, 5, 7}), input({2, 3, 7, 3})));
}

TEST(OpMatMul, BroadcastBatch) {
  run_op_case(matmul(input({2, 1, 3, 4}), input({5, 4, 6})));
  run_op_case(matmul(input({3, 4}), input({2, 4, 5})));
  run_op_case(matmul(input({2, 3, 4}), input({4, 5})));
  run_op_case(matmul(input({1, 3, 4}), input({6, 4, 5})));
  run_op_case(matmul(input({2, 1, 3, 1, 3, 4}), input({1, 5, 1, 2, 4, 2})));
}

TEST(OpMatMul, OneDRules) {
  OpCase vm = matmul(input({4}), input({4, 5}));
  EXPECT_EQ(run_op_case(vm).outputs.at(0).shape, (Dims{5}));
  OpCase mv = matmul(input({2, 3, 4}), input({4}));
  EXPECT_EQ(run_op_case(mv).outputs.at(0).shape, (Dims{2, 3}));
  OpCase dot = matmul(input({7}), input({7}));
  EXPECT_EQ(run_op_case(dot).outputs.at(0).shape, (Dims{}));
  OpCase vbm = matmul(input({4}), input({2, 4, 5}));
  EXPECT_EQ(run_op_case(vbm).outputs.at(0).shape, (Dims{2, 5}));
}

TEST(OpMatMul, ConstantWeightsDynamicBatch) {
  OpCase c = matmul(input({1, 16}), random_constant({16, 8}));
  c.more_shapes = {{{7, 16}}, {{64, 16}}, {{1, 16}}};
  run_op_case(c);
  OpCase c3 = matmul(input({1, 5, 16}), random_constant({16, 8}));
  c3.more_shapes = {{{7, 5, 16}}, {{64, 3, 16}}};
  run_op_case(c3);
}

TEST(OpMatMul, ZeroSizeDims) {
  run_op_case(matmul(input({0, 4}), input({4, 5})));
  run_op_case(matmul(input({3, 4}), input({4, 0})));
  run_op_case(matmul(input({0, 3, 4}), input({4, 5})));
  OpCase k0 = matmul(input({3, 0}), input({0, 5}));
  EXPECT_EQ(run_op_case(k0).outputs.at(0).shape, (Dims{3, 5}));
}

// Reduced precision: tf32 (1e-3) runs on the CPU kernel as float32 too; float16 (1e-2) has no CPU kernel, so
// those cases only check the reference here and run on the CUDA kernels where a GPU is present.
OpCase with_precision(OpCase c, const std::string& precision) {
  c.precision = precision;
  if (precision == "fp16") {
    for (auto& in : c.inputs) in.dtype = DataType::kFloat16;
    c.tolerance = 1e-2;
    c.require_kernel = false;
  } else {
    c.tolerance = 1e-3;
  }
  return c;
}

TEST(OpMatMul, Tf32AndFp16) {
  for (const char* p : {"tf32", "fp16"}) {
    run_op_case(with_precision(matmul(input({24, 40}), input({40, 16})), p));
    run_op_case(with_precision(matmul(input({3, 24, 40}), input({3, 40, 16})), p));            // strided batch
    run_op_case(with_precision(matmul(input({2, 3, 24, 40}), random_constant({40, 16})), p));  // folded into M
    run_op_case(with_precision(matmul(input({24, 40}), input({4, 40, 16})), p));               // A broadcast
    run_op_case(with_precision(matmul(input({2, 1, 8, 24}), input({1, 3, 24, 8})), p));        // one launch per outer
    run_op_case(with_precision(matmul(input({40}), input({2, 40, 16})), p));                   // 1-D A
    OpCase dyn = with_precision(matmul(input({1, 5, 64}), random_constant({64, 32})), p);
    dyn.more_shapes = {{{7, 5, 64}}, {{16, 3, 64}}};
    run_op_case(dyn);
  }
}

TEST(OpMatMul, IntegerReferenceOnly) {
  OpCase c = matmul(input({3, 4}, DataType::kInt64), input({4, 2}, DataType::kInt64));
  c.require_kernel = false;
  auto r = run_op_case(c);
  EXPECT_TRUE(r.kernels_run.empty());
  ASSERT_FALSE(r.kernels_skipped.empty());
  EXPECT_NE(r.kernels_skipped[0].find("dtype int64"), std::string::npos) << r.kernels_skipped[0];
}

TEST(OpMatMul, Errors) {
  Status s = infer_op(matmul(input({3, 4}), input({5, 6})));
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.to_string().find("inner dimensions differ"), std::string::npos) << s.to_string();
  s = infer_op(matmul(input({2, 3, 4}), input({3, 4, 5})));
  EXPECT_NE(s.to_string().find("cannot be broadcast"), std::string::npos) << s.to_string();
  s = infer_op(matmul(input({}), input({3})));
  EXPECT_FALSE(s.is_ok());
  OpCase bad = matmul(input({3, 4}), input({4, 5}));
  bad.attr("transA", int64_t{1});
  s = check_op(bad);
  EXPECT_NE(s.message().find("MatMul: attribute 'transA' is not supported"), std::string::npos) << s.to_string();
}

}  // namespace
}  // namespace kiln::test
