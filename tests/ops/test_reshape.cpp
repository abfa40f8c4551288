#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase reshape(Dims in, std::vector<int64_t> shape, int opset = 14, DataType dt = DataType::kFloat32) {
  OpCase c;
  c.op_type = "Reshape";
  c.opset = opset;
  c.exact = true;
  c.inputs = {input(std::move(in), dt), ints(shape)};
  return c;
}

Dims out_shape(const OpCase& c) {
  std::vector<TensorDesc> out;
  Status s = infer_op(c, &out);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return s.is_ok() ? out.at(0).shape : Dims{-99};
}

TEST(OpReshape, ZeroAndMinusOne) {
  EXPECT_EQ(run_op_case(reshape({2, 3, 4}, {0, -1})).outputs.at(0).shape, (Dims{2, 12}));
  EXPECT_EQ(run_op_case(reshape({2, 3, 4}, {-1})).outputs.at(0).shape, (Dims{24}));
  EXPECT_EQ(run_op_case(reshape({2, 3, 4}, {4, 0, 2})).outputs.at(0).shape, (Dims{4, 3, 2}));
  EXPECT_EQ(run_op_case(reshape({2, 3, 4}, {-1, 2, 3}, 5)).outputs.at(0).shape, (Dims{4, 2, 3}));
  EXPECT_EQ(run_op_case(reshape({6}, {1, 1, 6, 1})).outputs.at(0).shape, (Dims{1, 1, 6, 1}));
  EXPECT_EQ(run_op_case(reshape({}, {1})).outputs.at(0).shape, (Dims{1}));
  EXPECT_EQ(run_op_case(reshape({1}, {})).outputs.at(0).shape, (Dims{}));
  run_op_case(reshape({3, 5}, {15}, 14, DataType::kInt64));
  run_op_case(reshape({3, 5}, {5, 3}, 14, DataType::kUInt8));
}

TEST(OpReshape, AllowZero) {
  OpCase c = reshape({0, 3}, {0, 3});
  c.attr("allowzero", int64_t{1});
  EXPECT_EQ(run_op_case(c).outputs.at(0).shape, (Dims{0, 3}));
  OpCase z = reshape({3, 0}, {0, 5});
  z.attr("allowzero", int64_t{1});
  EXPECT_EQ(run_op_case(z).outputs.at(0).shape, (Dims{0, 5}));
  // Without allowzero, 0 copies the input dim.
  EXPECT_EQ(out_shape(reshape({3, 0}, {0, 0})), (Dims{3, 0}));
  OpCase bad = reshape({0, 3}, {0, -1});
  bad.attr("allowzero", int64_t{1});
  EXPECT_NE(infer_op(bad).to_string().find("ambiguous"), std::string::npos);
  OpCase old = reshape({2, 3}, {6}, 13);
  old.attr("allowzero", int64_t{0});
  EXPECT_NE(check_op(old).message().find("attribute 'allowzero' is not supported"), std::string::npos);
}

TEST(OpReshape, DynamicBatch) {
  OpCase c = reshape({1, 4, 5}, {0, -1});
  c.more_shapes = {{{7, 4, 5}}, {{64, 4, 5}}};
  run_op_case(c);
}

TEST(OpReshape, Errors) {
  Status s = infer_op(reshape({2, 3}, {-1, -1}));
  EXPECT_NE(s.to_string().find("more than one -1"), std::string::npos) << s.to_string();
  s = infer_op(reshape({2, 3}, {4, 2}));
  EXPECT_NE(s.to_string().find("Reshape: cannot reshape [2,3] to shape [4,2]"), std::string::npos) << s.to_string();
  s = infer_op(reshape({2, 3}, {4, -1}));
  EXPECT_NE(s.to_string().find("do not divide"), std::string::npos) << s.to_string();
  s = infer_op(reshape({2, 3}, {6, 1, 0}));
  EXPECT_NE(s.to_string().find("no input dimension to copy"), std::string::npos) << s.to_string();
  s = infer_op(reshape({2, 3}, {-2, 3}));
  EXPECT_FALSE(s.is_ok());
  OpCase dyn = reshape({2, 3}, {6});
  dyn.inputs[1] = input({1}, DataType::kInt64);
  s = infer_op(dyn);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.to_string().find("must be a constant"), std::string::npos);
}

OpCase flatten(Dims in, std::optional<int64_t> axis, int opset = 13) {
  OpCase c;
  c.op_type = "Flatten";
  c.opset = opset;
  c.exact = true;
  c.inputs = {input(std::move(in))};
  if (axis) c.attr("axis", *axis);
  return c;
}

TEST(OpFlatten, Axes) {
  EXPECT_EQ(run_op_case(flatten({2, 3, 4}, std::nullopt)).outputs.at(0).shape, (Dims{2, 12}));
  EXPECT_EQ(run_op_case(flatten({2, 3, 4}, 0)).outputs.at(0).shape, (Dims{1, 24}));
  EXPECT_EQ(run_op_case(flatten({2, 3, 4}, 3)).outputs.at(0).shape, (Dims{24, 1}));
  EXPECT_EQ(run_op_case(flatten({2, 3, 4}, -1)).outputs.at(0).shape, (Dims{6, 4}));
  EXPECT_EQ(run_op_case(flatten({2, 0, 4}, 2)).outputs.at(0).shape, (Dims{0, 4}));
  EXPECT_EQ(run_op_case(flatten({5}, 1, 1)).outputs.at(0).shape, (Dims{5, 1}));
  OpCase dyn = flatten({1, 3, 5, 5}, 1);
  dyn.more_shapes = {{{7, 3, 5, 5}}, {{64, 3, 5, 5}}};
  run_op_case(dyn);
}

TEST(OpFlatten, Errors) {
  EXPECT_NE(infer_op(flatten({2, 3}, 3)).to_string().find("axis 3 is out of range"), std::string::npos);
  EXPECT_FALSE(infer_op(flatten({2, 3}, -3)).is_ok());
  OpCase bad = flatten({2, 3}, 1);
  bad.attr("axes", int64_t{1});
  EXPECT_NE(check_op(bad).message().find("Flatten: attribute 'axes' is not supported"), std::string::npos);
}

}  // namespace
}  // namespace kiln::test
