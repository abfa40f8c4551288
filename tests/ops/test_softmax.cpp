#include <cmath>

#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase softmax(Dims shape, int opset, std::optional<int64_t> axis = std::nullopt,
               DataType dt = DataType::kFloat32) {
  OpCase c;
  c.op_type = "Softmax";
  c.opset = opset;
  c.inputs = {input(std::move(shape), dt)};
  if (axis) c.attr("axis", *axis);
  if (dt == DataType::kFloat16) {  // the CPU kernel is float32 only
    c = gpu_only(std::move(c));
    c.tolerance = kFloat16Tolerance;
  }
  return c;
}

TEST(OpSoftmax, Opset13SingleAxis) {
  run_op_case(softmax({3, 10}, 13));
  run_op_case(softmax({2, 3, 5}, 13, 1));   // strided (inner > 1)
  run_op_case(softmax({2, 3, 5}, 13, 0));
  run_op_case(softmax({2, 3, 5}, 13, -2));
  run_op_case(softmax({7}, 13));
  run_op_case(softmax({4, 1000}, 13));
  run_op_case(softmax({64, 1031}, 13));     // parallel rows
  run_op_case(softmax({8, 97, 97}, 13, 1)); // parallel strided
  run_op_case(softmax({0, 5}, 13));
}

TEST(OpSoftmax, LegacyCoercesTo2D) {
  run_op_case(softmax({3, 10}, 11));
  run_op_case(softmax({2, 3, 5}, 11));       // axis 1: normalizes over 3*5
  run_op_case(softmax({2, 3, 5}, 1, 2));
  run_op_case(softmax({2, 3, 5}, 11, -1));
  run_op_case(softmax({2, 3, 5}, 11, 0));    // whole tensor
  run_op_case(softmax({2, 3}, 11, 2));       // axis == rank: every element alone
  // The two semantics differ on rank > 2: check the legacy one sums to 1 over the trailing dims.
  OpCase c = softmax({2, 3, 4}, 11);
  auto ref = reference_op(c);
  ASSERT_TRUE(ref.is_ok());
  double sum = 0;
  for (int i = 0; i < 12; ++i) sum += ref->at(0).data[i];
  EXPECT_NEAR(sum, 1.0, 1e-12);
}

TEST(OpSoftmax, LongRows) {
  // fp32 must stay within 1e-5 on long rows: sums accumulate in double on every backend.
  run_op_case(softmax({2, 70000}, 13));
  run_op_case(softmax({3, 1024}, 13));      // longest row of a CUDA warp-per-row launch
  run_op_case(softmax({3, 1025}, 13));      // shortest row of a CUDA block-per-row launch
  run_op_case(softmax({2, 20000, 3}, 13, 1));  // long strided rows
  run_op_case(softmax({5, 1, 7}, 13, 1));   // rows of one element
}

TEST(OpSoftmax, Float16) {
  const DataType h = DataType::kFloat16;
  run_op_case(softmax({3, 10}, 13, std::nullopt, h));
  run_op_case(softmax({2, 3, 5}, 13, 1, h));    // strided
  run_op_case(softmax({64, 1031}, 13, std::nullopt, h));
  run_op_case(softmax({2, 3, 5}, 11, std::nullopt, h));  // legacy 2-D coercion
  run_op_case(softmax({0, 5}, 13, std::nullopt, h));
  OpCase big = softmax({4, 50}, 13, std::nullopt, h);
  big.magnitude = 500;
  run_op_case(big);
  OpCase dyn = softmax({1, 10}, 13, std::nullopt, h);
  dyn.more_shapes = {{{7, 10}}, {{64, 10}}};
  run_op_case(dyn);
}

TEST(OpSoftmax, DynamicBatch) {
  OpCase c = softmax({1, 10}, 13);
  c.more_shapes = {{{7, 10}}, {{64, 10}}};
  run_op_case(c);
  OpCase s = softmax({1, 4, 6}, 13, 1);
  s.more_shapes = {{{7, 4, 6}}, {{64, 4, 6}}};
  run_op_case(s);
}

TEST(OpSoftmax, LargeInputsStayFinite) {
  OpCase c = softmax({4, 50}, 13);
  c.magnitude = 500;
  run_op_case(c);
}

TEST(OpSoftmax, Errors) {
  Status s = infer_op(softmax({2, 3}, 13, 2));
  EXPECT_NE(s.to_string().find("axis 2 is out of range"), std::string::npos) << s.to_string();
  s = infer_op(softmax({2, 3}, 11, 3));
  EXPECT_FALSE(s.is_ok());
  OpCase bad = softmax({2, 3}, 13);
  bad.attr("foo", int64_t{1});
  s = check_op(bad);
  EXPECT_NE(s.message().find("Softmax: attribute 'foo' is not supported"), std::string::npos) << s.to_string();
  OpCase i64 = softmax({3}, 13);
  i64.inputs[0].dtype = DataType::kInt64;
  EXPECT_FALSE(infer_op(i64).is_ok());
}

}  // namespace
}  // namespace kiln::test
