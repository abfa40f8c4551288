#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

OpCase transpose(Dims in, std::optional<std::vector<int64_t>> perm, DataType dt = DataType::kFloat32) {
  OpCase c;
  c.op_type = "Transpose";
  c.opset = 13;
  c.exact = true;
  c.inputs = {input(std::move(in), dt)};
  if (perm) c.attr("perm", *perm);
  return c;
}

TEST(OpTranspose, Permutations) {
  EXPECT_EQ(run_op_case(transpose({3, 5}, std::nullopt)).outputs.at(0).shape, (Dims{5, 3}));
  EXPECT_EQ(run_op_case(transpose({2, 3, 5}, std::nullopt)).outputs.at(0).shape, (Dims{5, 3, 2}));
  run_op_case(transpose({2, 3, 5}, std::vector<int64_t>{0, 2, 1}));
  run_op_case(transpose({2, 3, 5}, std::vector<int64_t>{1, 0, 2}));
  run_op_case(transpose({2, 3, 5, 7}, std::vector<int64_t>{0, 2, 3, 1}));  // NCHW -> NHWC
  run_op_case(transpose({2, 5, 7, 3}, std::vector<int64_t>{0, 3, 1, 2}));  // NHWC -> NCHW
  run_op_case(transpose({2, 3, 5}, std::vector<int64_t>{0, 1, 2}));        // identity perm
  run_op_case(transpose({1, 3, 1, 5}, std::vector<int64_t>{2, 0, 3, 1}));  // unit dims only: a copy
  run_op_case(transpose({}, std::nullopt));
  run_op_case(transpose({7}, std::nullopt));
  run_op_case(transpose({0, 3}, std::nullopt));
  run_op_case(transpose({301, 257}, std::nullopt));                          // parallel, tiled
  run_op_case(transpose({2, 3, 4, 5, 6, 7}, std::vector<int64_t>{5, 3, 1, 0, 2, 4}));
}

TEST(OpTranspose, AllElementSizes) {
  for (DataType dt : {DataType::kFloat16, DataType::kFloat64, DataType::kInt8, DataType::kUInt8, DataType::kInt32,
                      DataType::kInt64, DataType::kBool})
    run_op_case(transpose({3, 4, 5}, std::vector<int64_t>{2, 0, 1}, dt));
}

TEST(OpTranspose, TiledAndGatherWalks) {
  // Sizes that are not multiples of the CUDA kernel's 32x32 tile, every element size, both kernels:
  // the input's contiguous dim second to last in the output (tiled) or elsewhere (gather).
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt8, DataType::kInt64}) {
    run_op_case(transpose({67, 129}, std::nullopt, dt));                              // 2-D
    run_op_case(transpose({3, 33, 65}, std::vector<int64_t>{0, 2, 1}, dt));           // batched
    run_op_case(transpose({2, 37, 9, 11}, std::vector<int64_t>{0, 2, 3, 1}, dt));     // NCHW -> NHWC
    run_op_case(transpose({2, 3, 4, 5}, std::vector<int64_t>{3, 0, 2, 1}, dt));       // gather
    run_op_case(transpose({5, 6, 7}, std::vector<int64_t>{1, 0, 2}, dt));             // inner dim kept
  }
}

TEST(OpTranspose, DynamicBatch) {
  OpCase c = transpose({1, 4, 6}, std::vector<int64_t>{0, 2, 1});
  c.more_shapes = {{{7, 4, 6}}, {{64, 4, 6}}};
  run_op_case(c);
}

TEST(OpTranspose, Errors) {
  Status s = infer_op(transpose({2, 3}, std::vector<int64_t>{0, 0}));
  EXPECT_NE(s.to_string().find("perm [0,0] is not a permutation of 2 dims"), std::string::npos) << s.to_string();
  EXPECT_FALSE(infer_op(transpose({2, 3}, std::vector<int64_t>{0, 1, 2})).is_ok());
  EXPECT_FALSE(infer_op(transpose({2, 3}, std::vector<int64_t>{-1, 0})).is_ok());
  OpCase bad = transpose({2, 3}, std::nullopt);
  bad.attr("axes", std::vector<int64_t>{1, 0});
  EXPECT_NE(check_op(bad).message().find("Transpose: attribute 'axes' is not supported"), std::string::npos);
}

}  // namespace
}  // namespace kiln::test
