// QuantizeLinear, DequantizeLinear and kiln.QGemm against their float64 references on every kernel. The
// QGemm reference is the same quantized arithmetic (int32 accumulation is exact in float64), so a kernel
// that rescales, adds the bias, activates or requantizes differently fails here.
#include <random>

#include <gtest/gtest.h>

#include "../op_harness.h"

namespace kiln::test {
namespace {

std::vector<double> int8_values(int64_t n, uint64_t seed, int lo = -127, int hi = 127) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = d(rng);
  return v;
}

std::vector<double> floats(int64_t n, uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = static_cast<float>(d(rng));
  return v;
}

OpCase quantize(Dims x, DataType out, Dims scale_shape, std::vector<double> scales, int opset = 19) {
  OpCase c;
  c.op_type = "QuantizeLinear";
  c.opset = opset;
  c.integer_slack = 1;
  c.magnitude = 40;
  c.inputs = {input(std::move(x)), constant(DataType::kFloat32, scale_shape, std::move(scales))};
  if (out != DataType::kUndefined)
    c.inputs.push_back(constant(out, scale_shape, std::vector<double>(volume(scale_shape) ? volume(scale_shape) : 1,
                                                                      out == DataType::kInt8 ? -3 : 7)));
  return c;
}

TEST(OpQuantizeLinear, PerTensorInt8AndUint8) {
  for (DataType dt : {DataType::kInt8, DataType::kUInt8})
    EXPECT_EQ(run_op_case(quantize({4, 33}, dt, {}, {0.25})).outputs.at(0).dtype, dt);
  // No zero point: uint8 output, as ONNX says.
  EXPECT_EQ(run_op_case(quantize({70000}, DataType::kUndefined, {}, {0.3})).outputs.at(0).dtype, DataType::kUInt8);
}

TEST(OpQuantizeLinear, RoundsHalfToEvenAndSaturates) {
  OpCase c = quantize({10}, DataType::kInt8, {}, {1.0});
  c.inputs[2].values = {0};
  c.integer_slack = 0;
  c.inputs[0].values = {0.5, 1.5, 2.5, -0.5, -1.5, 300, -300, 126.5, std::nan(""), 3.49};
  run_op_case(c);
  auto ref = reference_op(c);
  ASSERT_TRUE(ref.is_ok());
  EXPECT_EQ(ref->at(0).data, (std::vector<double>{0, 2, 2, -0.0, -2, 127, -128, 126, 0, 3}));
}

TEST(OpQuantizeLinear, PerAxis) {
  run_op_case(quantize({3, 4, 5}, DataType::kInt8, {4}, {0.1, 0.2, 0.4, 0.8}, 13));
  OpCase last = quantize({2, 6}, DataType::kUInt8, {6}, {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, 13);
  last.attr("axis", int64_t{-1});
  run_op_case(last);
  // Inner size a multiple of 4: groups of 4 elements share a channel (the CUDA kernel's vector path).
  run_op_case(quantize({2, 3, 8}, DataType::kInt8, {3}, {0.1, 0.3, 0.05}, 13));
}

TEST(OpQuantizeLinear, Errors) {
  OpCase wrong = quantize({3, 4}, DataType::kInt8, {3}, {0.1, 0.2, 0.3});  // axis 1 has 4
  Status s = infer_op(wrong);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("along axis 1"), std::string::npos) << s.to_string();
  OpCase blocked = quantize({3, 4}, DataType::kInt8, {}, {0.1}, 21);
  blocked.attr("block_size", int64_t{2});
  EXPECT_NE(check_op(blocked).message().find("block_size"), std::string::npos);
  OpCase axis10 = quantize({3, 4}, DataType::kInt8, {}, {0.1}, 10);
  axis10.attr("axis", int64_t{0});
  EXPECT_FALSE(check_op(axis10).is_ok());  // no axis attribute before opset 13
}

OpCase dequantize(DataType dt, Dims x, Dims scale_shape, std::vector<double> scales, bool zp = true) {
  OpCase c;
  c.op_type = "DequantizeLinear";
  c.opset = 19;
  c.inputs = {input(std::move(x), dt), constant(DataType::kFloat32, scale_shape, std::move(scales))};
  if (zp) c.inputs.push_back(constant(dt, scale_shape, std::vector<double>(volume(scale_shape), dt == DataType::kUInt8 ? 128 : dt == DataType::kInt8 ? 5 : 0)));
  return c;
}

TEST(OpDequantizeLinear, TypesAndAxes) {
  for (DataType dt : {DataType::kInt8, DataType::kUInt8, DataType::kInt32}) {
    run_op_case(dequantize(dt, {5, 7}, {}, {0.125}));
    run_op_case(dequantize(dt, {2, 3, 4}, {3}, {0.5, 0.25, 2.0}));
  }
  run_op_case(dequantize(DataType::kInt8, {70000}, {}, {0.01}, false));
}

// QGemm with full-range int8 data: A [M,K] (runtime), W (constant) and float bias/weight scales.
OpCase qgemm(int64_t M, int64_t K, int64_t N, bool bias, float y_scale, const char* act = "", bool trans_b = false) {
  OpCase c;
  c.domain = "kiln";
  c.op_type = "QGemm";
  c.integer_slack = 1;
  c.tolerance = 1e-5;
  InputSpec a = input({M, K}, DataType::kInt8);
  a.values = int8_values(M * K, 11);
  c.inputs = {a, constant(DataType::kInt8, trans_b ? Dims{N, K} : Dims{K, N}, int8_values(K * N, 12)),
              bias ? constant(DataType::kFloat32, {N}, floats(N, 13, -2, 2)) : omitted(),
              constant(DataType::kFloat32, {N}, floats(N, 14, 1e-3, 4e-3))};
  c.attr("a_scale", 0.02f).attr("y_scale", y_scale);
  if (*act) c.attr("activation", std::string(act));
  if (trans_b) c.attr("transB", int64_t{1});
  return c;
}

TEST(OpQGemm, FloatOutput) {
  for (bool bias : {false, true})
    for (const char* act : {"", "Relu", "Sigmoid"}) run_op_case(qgemm(9, 40, 17, bias, 0.f, act));
  run_op_case(qgemm(3, 784, 256, true, 0.f, "Relu", true));
}

TEST(OpQGemm, Int8Output) {
  // y_scale near the output's range so that values spread over the int8 grid and some saturate.
  for (bool bias : {false, true})
    for (const char* act : {"", "Relu", "Tanh"}) {
      OpCase c = qgemm(8, 64, 24, bias, std::string(act) == "Tanh" ? 0.008f : 0.05f, act);
      EXPECT_EQ(run_op_case(c).outputs.at(0).dtype, DataType::kInt8);
    }
}

TEST(OpQGemm, DynamicBatchAndRank3) {
  OpCase c = qgemm(4, 32, 16, true, 0.05f, "Relu");
  c.more_shapes = {{{1, 32}}, {{37, 32}}, {{4, 32}}};
  run_op_case(c);
  OpCase r3 = qgemm(6, 32, 8, true, 0.f);
  r3.inputs[0].shape = {2, 3, 32};
  EXPECT_EQ(run_op_case(r3).outputs.at(0).shape, (Dims{2, 3, 8}));
}

// K or N not a multiple of 4 (cuBLASLt's int8 kernels refuse them; the CUDA tiled kernel runs them), several
// tiles in M, N and K, a per-tensor weight scale and LeakyRelu.
TEST(OpQGemm, OddSizesAndPerTensorWeightScale) {
  run_op_case(qgemm(5, 30, 12, true, 0.05f, "LeakyRelu"));
  OpCase big = qgemm(130, 100, 70, true, 0.f, "Relu", true);
  big.more_shapes = {{{1, 100}}, {{64, 100}}};
  run_op_case(big);
  OpCase one_scale = qgemm(7, 48, 20, true, 0.04f);
  one_scale.inputs[3] = constant(DataType::kFloat32, {1}, {2.5e-3});
  run_op_case(one_scale);
}

TEST(OpQGemm, Errors) {
  OpCase bad = qgemm(2, 8, 4, true, 0.f);
  bad.attrs.set("a_scale", 0.f);
  EXPECT_NE(check_op(bad).message().find("a_scale"), std::string::npos);
  OpCase k = qgemm(2, 8, 4, true, 0.f);
  k.inputs[1].shape = {9, 4};
  k.inputs[1].values.resize(36, 1);
  EXPECT_NE(infer_op(k).message().find("inner dimensions"), std::string::npos);
  OpCase fp = qgemm(2, 8, 4, true, 0.f);
  fp.inputs[0].dtype = DataType::kFloat32;
  EXPECT_NE(infer_op(fp).message().find("int8"), std::string::npos);
}

}  // namespace
}  // namespace kiln::test
