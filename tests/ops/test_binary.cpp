#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

const char* const kOps[] = {"Add", "Sub", "Mul", "Div"};
const DataType kTypes[] = {DataType::kFloat32, DataType::kInt64, DataType::kInt32, DataType::kFloat16};

OpCase binary(const char* op, InputSpec a, InputSpec b, int opset = 14) {
  OpCase c;
  c.op_type = op;
  c.opset = opset;
  c.inputs = {a, std::move(b)};
  if (a.dtype == DataType::kFloat16) {  // the CPU kernels have no float16 arithmetic
    c = gpu_only(std::move(c));
    c.tolerance = kFloat16Tolerance;
  }
  return c;
}

// Runs op on (a, b) for every op and dtype.
void run_all(const Dims& a, const Dims& b) {
  for (const char* op : kOps)
    for (DataType dt : kTypes) {
      OpCase c = binary(op, input(a, dt), input(b, dt));
      c.seed = static_cast<uint64_t>(a.size() * 31 + b.size());
      run_op_case(c);
    }
}

TEST(OpBinary, SameShape) {
  run_all({3, 4}, {3, 4});
  run_all({13, 17}, {13, 17});
  run_all({5}, {5});
}

TEST(OpBinary, Broadcasting) {
  run_all({}, {3, 4});           // scalar left
  run_all({3, 4}, {});           // scalar right
  run_all({6, 7}, {7});          // [N]
  run_all({6, 7}, {1, 7});       // [1,N]
  run_all({6, 7}, {6, 1});       // column
  run_all({2, 3, 4}, {3, 1});    // rank mismatch
  run_all({3, 1}, {1, 4});       // both sides broadcast
  run_all({2, 1, 4}, {3, 1});    // both sides, rank mismatch
  run_all({1, 5, 1, 3}, {2, 1, 7, 1});
  run_all({1}, {1});
  run_all({2, 1, 3, 1, 5, 1}, {1, 4, 1, 6, 1, 7});  // rank 6 after merging: the general index walk
  run_all({4, 1, 1, 5}, {1, 3, 2, 1});               // merged broadcast dims on both sides
}

TEST(OpBinary, LargeParallel) {
  for (const char* op : kOps) {
    run_op_case(binary(op, input({301, 299}), input({299})));
    run_op_case(binary(op, input({3, 257, 129}), input({3, 1, 129})));
    run_op_case(binary(op, input({301, 299}), input({301, 299})));  // one long row, split into blocks
    run_op_case(binary(op, input({5, 40000}), input({5, 1})));
    run_op_case(binary(op, input({}), input({70001})));
    run_op_case(binary(op, input({301, 299}, DataType::kFloat16), input({299}, DataType::kFloat16)));
    run_op_case(binary(op, input({5, 40000}, DataType::kFloat16), input({5, 1}, DataType::kFloat16)));
  }
}

TEST(OpBinary, DynamicBatch) {
  for (const char* op : kOps) {
    OpCase c = binary(op, input({1, 10}), random_constant({10}));
    c.more_shapes = {{{7, 10}}, {{64, 10}}};
    run_op_case(c);
  }
}

TEST(OpBinary, ZeroSize) {
  run_all({0, 3}, {3});
  run_all({2, 0}, {1});
}

TEST(OpBinary, IntegerDivTruncates) {
  for (DataType dt : {DataType::kInt64, DataType::kInt32}) {
    OpCase c = binary("Div", constant(dt, {6}, {-7, 7, -7, 7, -1, 5}), input({6}, dt));
    c.inputs[1].values = {2, 2, -2, -2, 3, 9};
    run_op_case(c);
    c.inputs[1] = constant(dt, {6}, {2, 2, -2, -2, 3, 9});
    c.inputs[0] = input({6}, dt);
    c.inputs[0].values = {-7, 7, -7, 7, -1, 5};
    auto ref = reference_op(c);
    ASSERT_TRUE(ref.is_ok()) << ref.status().to_string();
    EXPECT_EQ(ref->at(0).data, (std::vector<double>{-3, 3, 3, -3, 0, 0}));
  }
}

TEST(OpBinary, IntegerDivByZeroGivesZero) {
  // ONNX leaves it undefined; Kiln defines x / 0 = 0 so that no kernel traps (ops/elementwise.h).
  for (DataType dt : {DataType::kInt64, DataType::kInt32}) {
    OpCase c = binary("Div", input({5}, dt), constant(dt, {5}, {0, 0, 0, 1, -1}));
    c.inputs[0].values = {5, -5, 1, 7, 7};
    run_op_case(c);
    auto ref = reference_op(c);
    ASSERT_TRUE(ref.is_ok()) << ref.status().to_string();
    EXPECT_EQ(ref->at(0).data, (std::vector<double>{0, 0, 0, 7, -7}));
  }
}

TEST(OpBinary, LegacyOpsets) {
  run_op_case(binary("Add", input({2, 3}), input({2, 3}), 6));
  OpCase bc = binary("Mul", input({2, 3}), input({3}), 6);
  bc.attr("broadcast", int64_t{1});
  run_op_case(bc);
  Status s = infer_op(binary("Add", input({2, 3}), input({3}), 6));
  EXPECT_NE(s.to_string().find("not compatible without numpy broadcasting"), std::string::npos) << s.to_string();
  OpCase axis = binary("Add", input({2, 3}), input({2}), 6);
  axis.attr("broadcast", int64_t{1}).attr("axis", int64_t{0});
  s = check_op(axis);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("'axis'"), std::string::npos) << s.to_string();
}

TEST(OpBinary, Errors) {
  Status s = infer_op(binary("Add", input({2, 3}), input({4})));
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.to_string().find("shapes [2,3] and [4] cannot be broadcast"), std::string::npos) << s.to_string();
  s = infer_op(binary("Mul", input({2, 3}), input({2, 3}, DataType::kInt64)));
  EXPECT_NE(s.to_string().find("different dtypes"), std::string::npos) << s.to_string();
  OpCase bad = binary("Sub", input({2}), input({2}));
  bad.attr("broadcast", int64_t{1});
  s = check_op(bad);
  EXPECT_NE(s.message().find("Sub: attribute 'broadcast' is not supported"), std::string::npos) << s.to_string();
}

TEST(OpBinary, KernelRejectsOtherDtypes) {
  OpCase c = binary("Add", input({4}, DataType::kFloat64), input({4}, DataType::kFloat64));
  c.require_kernel = false;
  c.require_cuda_kernel = false;
  auto r = run_op_case(c);
  EXPECT_TRUE(r.kernels_run.empty());
  ASSERT_FALSE(r.kernels_skipped.empty());
  EXPECT_NE(r.kernels_skipped[0].find("dtype float64 of input 0 is not supported by cpu."), std::string::npos)
      << r.kernels_skipped[0];
}

}  // namespace
}  // namespace kiln::test
