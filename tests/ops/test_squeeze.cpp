#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

// Axes as an attribute before opset 13, as a constant input from 13.
OpCase squeeze_like(const char* op, Dims in, std::optional<std::vector<int64_t>> axes, int opset) {
  OpCase c;
  c.op_type = op;
  c.opset = opset;
  c.exact = true;
  c.inputs = {input(std::move(in))};
  if (axes) {
    if (opset < 13) c.attr("axes", *axes);
    else c.inputs.push_back(ints(*axes));
  }
  return c;
}

Dims run_shape(const OpCase& c) { return run_op_case(c).outputs.at(0).shape; }

TEST(OpSqueeze, BothOpsetForms) {
  for (int opset : {11, 13, 21}) {
    EXPECT_EQ(run_shape(squeeze_like("Squeeze", {1, 3, 1, 4}, std::vector<int64_t>{0}, opset)), (Dims{3, 1, 4}));
    EXPECT_EQ(run_shape(squeeze_like("Squeeze", {1, 3, 1, 4}, std::vector<int64_t>{-2, 0}, opset)), (Dims{3, 4}));
    EXPECT_EQ(run_shape(squeeze_like("Squeeze", {1, 3, 1, 4}, std::nullopt, opset)), (Dims{3, 4}));
    EXPECT_EQ(run_shape(squeeze_like("Squeeze", {1, 1}, std::nullopt, opset)), (Dims{}));
    EXPECT_EQ(run_shape(squeeze_like("Squeeze", {0, 1}, std::vector<int64_t>{1}, opset)), (Dims{0}));
  }
  // Opset 13+ with the axes input omitted explicitly.
  OpCase c = squeeze_like("Squeeze", {2, 1, 5}, std::nullopt, 13);
  c.inputs.push_back(omitted());
  EXPECT_EQ(run_shape(c), (Dims{2, 5}));
}

TEST(OpSqueeze, DynamicBatch) {
  OpCase c = squeeze_like("Squeeze", {1, 1, 8}, std::vector<int64_t>{1}, 13);
  c.more_shapes = {{{7, 1, 8}}, {{64, 1, 8}}};
  run_op_case(c);
}

TEST(OpSqueeze, Errors) {
  Status s = infer_op(squeeze_like("Squeeze", {2, 3}, std::vector<int64_t>{0}, 13));
  EXPECT_NE(s.to_string().find("axis 0 of input [2,3] has size 2, not 1"), std::string::npos) << s.to_string();
  s = infer_op(squeeze_like("Squeeze", {1, 3}, std::vector<int64_t>{2}, 11));
  EXPECT_NE(s.to_string().find("out of range"), std::string::npos) << s.to_string();
  s = infer_op(squeeze_like("Squeeze", {1, 3}, std::vector<int64_t>{0, -2}, 13));
  EXPECT_NE(s.to_string().find("repeat"), std::string::npos) << s.to_string();
  OpCase attr13 = squeeze_like("Squeeze", {1, 3}, std::nullopt, 13);
  attr13.attr("axes", std::vector<int64_t>{0});
  EXPECT_NE(check_op(attr13).message().find("Squeeze: attribute 'axes' is not supported"), std::string::npos);
  OpCase dyn = squeeze_like("Squeeze", {1, 3}, std::nullopt, 13);
  dyn.inputs.push_back(input({1}, DataType::kInt64));
  EXPECT_EQ(infer_op(dyn).code(), StatusCode::kUnsupported);
}

TEST(OpUnsqueeze, BothOpsetForms) {
  for (int opset : {1, 11, 13, 21}) {
    EXPECT_EQ(run_shape(squeeze_like("Unsqueeze", {3, 4}, std::vector<int64_t>{0}, opset)), (Dims{1, 3, 4}));
    EXPECT_EQ(run_shape(squeeze_like("Unsqueeze", {3, 4}, std::vector<int64_t>{0, 3}, opset)), (Dims{1, 3, 4, 1}));
    EXPECT_EQ(run_shape(squeeze_like("Unsqueeze", {}, std::vector<int64_t>{0}, opset)), (Dims{1}));
    EXPECT_EQ(run_shape(squeeze_like("Unsqueeze", {0, 2}, std::vector<int64_t>{1}, opset)), (Dims{0, 1, 2}));
  }
  for (int opset : {11, 13}) {
    // Negative axes count in the output rank: -1 appends.
    EXPECT_EQ(run_shape(squeeze_like("Unsqueeze", {3, 4}, std::vector<int64_t>{-1}, opset)), (Dims{3, 4, 1}));
    EXPECT_EQ(run_shape(squeeze_like("Unsqueeze", {3, 4}, std::vector<int64_t>{-1, 1}, opset)), (Dims{3, 1, 4, 1}));
  }
  OpCase dyn = squeeze_like("Unsqueeze", {1, 8}, std::vector<int64_t>{1}, 13);
  dyn.more_shapes = {{{7, 8}}, {{64, 8}}};
  run_op_case(dyn);
}

TEST(OpUnsqueeze, Errors) {
  Status s = infer_op(squeeze_like("Unsqueeze", {3}, std::vector<int64_t>{2}, 13));
  EXPECT_NE(s.to_string().find("out of range"), std::string::npos) << s.to_string();
  s = infer_op(squeeze_like("Unsqueeze", {3}, std::vector<int64_t>{0, 0}, 13));
  EXPECT_NE(s.to_string().find("repeat"), std::string::npos) << s.to_string();
  EXPECT_FALSE(check_op(squeeze_like("Unsqueeze", {3}, std::nullopt, 11)).is_ok());
  EXPECT_FALSE(check_op(squeeze_like("Unsqueeze", {3}, std::nullopt, 13)).is_ok());
}

}  // namespace
}  // namespace kiln::test
