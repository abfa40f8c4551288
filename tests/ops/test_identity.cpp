#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase identity(InputSpec in, int opset = 16) {
  OpCase c;
  c.op_type = "Identity";
  c.opset = opset;
  c.exact = true;
  c.inputs = {std::move(in)};
  return c;
}

TEST(OpIdentity, Copies) {
  run_op_case(identity(input({3, 4})));
  run_op_case(identity(input({}, DataType::kInt64)));
  run_op_case(identity(input({0, 4})));
  run_op_case(identity(input({5}, DataType::kBool), 1));
  OpCase dyn = identity(input({1, 9}));
  dyn.more_shapes = {{{7, 9}}, {{64, 9}}};
  run_op_case(dyn);
  OpCase bad = identity(input({2}));
  bad.attr("foo", 1.f);
  EXPECT_NE(check_op(bad).message().find("Identity: attribute 'foo' is not supported"), std::string::npos);
}

OpCase dropout(int opset, std::vector<InputSpec> extra = {}, size_t outputs = 1) {
  OpCase c;
  c.op_type = "Dropout";
  c.opset = opset;
  c.exact = true;
  c.inputs = {input({4, 6})};
  for (auto& e : extra) c.inputs.push_back(std::move(e));
  c.num_outputs = outputs;
  return c;
}

TEST(OpDropout, InferenceIsIdentity) {
  OpCase old = dropout(7);
  old.attr("ratio", 0.3f);
  run_op_case(old);
  OpCase v6 = dropout(6);
  v6.attr("is_test", int64_t{1});
  run_op_case(v6);
  run_op_case(dropout(13));
  run_op_case(dropout(13, {constant(DataType::kFloat32, {}, {0.2})}));
  run_op_case(dropout(13, {constant(DataType::kFloat32, {}, {0.2}), constant(DataType::kBool, {}, {0})}));
  run_op_case(dropout(13, {omitted(), constant(DataType::kBool, {}, {0})}));
  run_op_case(dropout(13, {input({}, DataType::kFloat32)}));  // a runtime ratio is fine: it has no effect
  OpCase dyn = dropout(13);
  dyn.more_shapes = {{{7, 6}}, {{64, 6}}};
  run_op_case(dyn);
}

TEST(OpDropout, MaskIsAllTrue) {
  // Opset >= 10: bool mask.
  OpCase c = dropout(13, {}, 2);
  auto r = run_op_case(c);
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_EQ(r.outputs[1].dtype, DataType::kBool);
  EXPECT_EQ(r.outputs[1].shape, (Dims{4, 6}));
  auto ref = reference_op(c);
  ASSERT_TRUE(ref.is_ok());
  for (double v : ref->at(1).data) EXPECT_EQ(v, 1.0);
  // Opset 7: the mask has the input's dtype (ones).
  OpCase old = dropout(7, {}, 2);
  EXPECT_EQ(run_op_case(old).outputs[1].dtype, DataType::kFloat32);
  OpCase half = dropout(7, {}, 2);
  half.inputs[0].dtype = DataType::kFloat16;
  run_op_case(half);
}

TEST(OpDropout, TrainingIsUnsupported) {
  Status s = infer_op(dropout(13, {omitted(), constant(DataType::kBool, {}, {1})}));
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.to_string().find("training mode is not supported"), std::string::npos) << s.to_string();
  s = infer_op(dropout(13, {omitted(), input({}, DataType::kBool)}));
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.to_string().find("training_mode input must be a constant"), std::string::npos) << s.to_string();
  OpCase v6 = dropout(6);
  v6.attr("is_test", int64_t{0});
  EXPECT_EQ(check_op(v6).code(), StatusCode::kUnsupported);
  OpCase ratio12 = dropout(12);
  ratio12.attr("ratio", 0.5f);
  EXPECT_NE(check_op(ratio12).message().find("Dropout: attribute 'ratio' is not supported"), std::string::npos);
  OpCase seed = dropout(12);
  seed.attr("seed", int64_t{3});
  EXPECT_TRUE(check_op(seed).is_ok());
}

}  // namespace
}  // namespace kiln::test
