#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase concat(std::vector<InputSpec> ins, int64_t axis, int opset = 13) {
  OpCase c;
  c.op_type = "Concat";
  c.opset = opset;
  c.exact = true;
  c.inputs = std::move(ins);
  c.attr("axis", axis);
  return c;
}

TEST(OpConcat, Axes) {
  EXPECT_EQ(run_op_case(concat({input({2, 3}), input({2, 5})}, 1)).outputs.at(0).shape, (Dims{2, 8}));
  EXPECT_EQ(run_op_case(concat({input({2, 3}), input({4, 3})}, 0)).outputs.at(0).shape, (Dims{6, 3}));
  EXPECT_EQ(run_op_case(concat({input({2, 3, 4}), input({2, 3, 1}), input({2, 3, 7})}, -1)).outputs.at(0).shape,
            (Dims{2, 3, 12}));
  run_op_case(concat({input({2, 3, 4}), input({2, 5, 4})}, -2));
  run_op_case(concat({input({5})}, 0));
  run_op_case(concat({input({3}), input({4})}, 0, 4));
  run_op_case(concat({input({301, 300}), input({301, 257})}, 1));  // parallel
}

TEST(OpConcat, ConstantsAndDtypes) {
  run_op_case(concat({input({1}, DataType::kInt64), ints({7, 9}), input({2}, DataType::kInt64)}, 0));
  run_op_case(concat({input({2, 2}, DataType::kFloat16), input({2, 3}, DataType::kFloat16)}, 1));
  run_op_case(concat({input({2, 2}, DataType::kBool), input({1, 2}, DataType::kBool)}, 0));
}

TEST(OpConcat, CopyWidths) {
  // Chunks and rows of 1, 2, 4, 8 and 16 bytes' alignment, several inputs, and whole-row copies (axis 0).
  run_op_case(concat({input({3, 5}, DataType::kInt8), input({3, 7}, DataType::kInt8)}, 1));
  run_op_case(concat({input({3, 5}, DataType::kFloat16), input({3, 2}, DataType::kFloat16),
                      input({3, 1}, DataType::kFloat16)}, 1));
  run_op_case(concat({input({4, 8}), input({4, 12}), input({4, 4})}, 1));
  run_op_case(concat({input({2, 3, 2}, DataType::kInt64), input({2, 1, 2}, DataType::kInt64)}, 1));
  run_op_case(concat({input({2, 3}), input({1, 3}), input({4, 3}), input({1, 3}), input({3, 3})}, 0));
  run_op_case(concat({input({1, 2, 5}, DataType::kFloat16), input({1, 3, 5}, DataType::kFloat16)}, 1));
}

TEST(OpConcat, ZeroSize) {
  run_op_case(concat({input({2, 0}), input({2, 3})}, 1));
  run_op_case(concat({input({0, 3}), input({0, 4})}, 1));
  run_op_case(concat({input({2, 3}), input({0, 3}), input({1, 3})}, 0));
}

TEST(OpConcat, DynamicBatch) {
  OpCase c = concat({input({1, 3}), input({1, 5})}, 1);
  c.more_shapes = {{{7, 3}, {7, 5}}, {{64, 3}, {64, 5}}};
  run_op_case(c);
}

TEST(OpConcat, Errors) {
  Status s = infer_op(concat({input({2, 3}), input({3, 3})}, 1));
  EXPECT_NE(s.to_string().find("input 1 has shape [3,3], which does not match input 0 [2,3] outside axis 1"),
            std::string::npos) << s.to_string();
  s = infer_op(concat({input({2, 3}), input({2, 3, 1})}, 0));
  EXPECT_FALSE(s.is_ok());
  s = infer_op(concat({input({2, 3}), input({2, 3})}, 2));
  EXPECT_NE(s.to_string().find("axis 2 is out of range"), std::string::npos) << s.to_string();
  s = infer_op(concat({input({2}), input({2}, DataType::kInt64)}, 0));
  EXPECT_FALSE(s.is_ok());
  OpCase no_axis = concat({input({2})}, 0);
  no_axis.attrs.erase("axis");
  EXPECT_NE(check_op(no_axis).message().find("'axis' is required"), std::string::npos);
}

}  // namespace
}  // namespace kiln::test
