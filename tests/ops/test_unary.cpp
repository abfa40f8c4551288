#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase unary(const char* op, Dims shape, int opset = 14, DataType dt = DataType::kFloat32) {
  OpCase c;
  c.op_type = op;
  c.opset = opset;
  c.inputs = {input(std::move(shape), dt)};
  if (dt == DataType::kFloat16) {  // the CPU kernels are float32 only
    c = gpu_only(std::move(c));
    c.tolerance = kFloat16Tolerance;
  }
  return c;
}

TEST(OpUnary, Shapes) {
  for (const char* op : {"Relu", "LeakyRelu", "Sigmoid", "Tanh"}) {
    run_op_case(unary(op, {3, 4}));
    run_op_case(unary(op, {}));
    run_op_case(unary(op, {0, 5}));
    run_op_case(unary(op, {2, 3, 5, 7}));
    run_op_case(unary(op, {257, 263}));  // parallel path
    OpCase dyn = unary(op, {1, 33});
    dyn.more_shapes = {{{7, 33}}, {{64, 33}}};
    run_op_case(dyn);
  }
}

TEST(OpUnary, Float16) {
  for (const char* op : {"Relu", "LeakyRelu", "Sigmoid", "Tanh"}) {
    run_op_case(unary(op, {3, 4}, 14, DataType::kFloat16));
    run_op_case(unary(op, {}, 14, DataType::kFloat16));
    run_op_case(unary(op, {0, 5}, 14, DataType::kFloat16));
    run_op_case(unary(op, {257, 263}, 14, DataType::kFloat16));
    OpCase big = unary(op, {1000}, 14, DataType::kFloat16);
    big.magnitude = 200;
    run_op_case(big);
  }
  OpCase c = unary("LeakyRelu", {5, 6}, 14, DataType::kFloat16);
  c.attr("alpha", 0.3f);
  run_op_case(c);
}

TEST(OpUnary, LargeMagnitudes) {
  // Saturation regions of Sigmoid/Tanh and exp overflow must not produce NaN.
  for (const char* op : {"Sigmoid", "Tanh"}) {
    OpCase c = unary(op, {1000});
    c.magnitude = 200;
    run_op_case(c);
  }
}

TEST(OpUnary, LeakyReluAlpha) {
  OpCase c = unary("LeakyRelu", {5, 6});
  c.attr("alpha", 0.3f);
  run_op_case(c);
  OpCase d = unary("LeakyRelu", {4}, 6);
  d.inputs[0].values = {-2, -1, 1, 2};
  auto ref = reference_op(d);
  ASSERT_TRUE(ref.is_ok());
  EXPECT_NEAR(ref->at(0).data[0], -0.02, 1e-9);  // default alpha 0.01
  EXPECT_EQ(ref->at(0).data[3], 2.0);
}

TEST(OpUnary, LegacyConsumedInputs) {
  OpCase c = unary("Relu", {3}, 1);
  c.attr("consumed_inputs", std::vector<int64_t>{0});
  run_op_case(c);
  OpCase bad = unary("Relu", {3}, 13);
  bad.attr("consumed_inputs", std::vector<int64_t>{0});
  EXPECT_FALSE(check_op(bad).is_ok());
}

TEST(OpUnary, IntegerReluReference) {
  OpCase c = unary("Relu", {6}, 14);
  c.inputs[0] = input({6}, DataType::kInt64);
  c.require_kernel = false;
  c.require_cuda_kernel = false;
  run_op_case(c);
}

TEST(OpUnary, Errors) {
  OpCase bad = unary("Tanh", {3});
  bad.attr("alpha", 0.5f);
  Status s = check_op(bad);
  EXPECT_NE(s.message().find("Tanh: attribute 'alpha' is not supported"), std::string::npos) << s.to_string();
  OpCase typed = unary("LeakyRelu", {3});
  typed.attr("alpha", int64_t{1});
  EXPECT_FALSE(check_op(typed).is_ok());
}

}  // namespace
}  // namespace kiln::test
