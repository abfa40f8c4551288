#include <bit>
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "../op_harness.h"
#include "ops/float16.h"

namespace kiln::test {
namespace {

const DataType kAll[] = {DataType::kFloat32, DataType::kFloat16, DataType::kFloat64, DataType::kInt8,
                         DataType::kUInt8,   DataType::kInt32,   DataType::kInt64,   DataType::kBool};

OpCase cast(InputSpec in, DataType to, int opset = 19) {
  OpCase c;
  c.op_type = "Cast";
  c.opset = opset;
  c.exact = true;
  c.inputs = {std::move(in)};
  c.attr("to", static_cast<int64_t>(to));
  return c;
}

TEST(OpCast, EveryPair) {
  for (DataType from : kAll)
    for (DataType to : kAll) {
      OpCase c = cast(input({3, 7}, from), to);
      c.magnitude = 300;  // exercises float->int8/uint8 wrap and float16 rounding
      EXPECT_EQ(run_op_case(c).outputs.at(0).dtype, to);
    }
}

TEST(OpCast, FloatToIntTruncatesTowardZero) {
  OpCase c = cast(input({8}), DataType::kInt32);
  c.inputs[0].values = {2.9, -2.9, 0.5, -0.5, 7.0, -7.0, 1e10, -1e10};
  run_op_case(c);
  auto ref = reference_op(c);
  ASSERT_TRUE(ref.is_ok());
  const auto& d = ref->at(0).data;
  EXPECT_EQ(d[0], 2);
  EXPECT_EQ(d[1], -2);
  EXPECT_EQ(d[2], 0);
  EXPECT_EQ(d[3], 0);
  EXPECT_EQ(d[4], 7);
  EXPECT_EQ(d[5], -7);
  // Out of range: saturate to int64, then wrap to the width (documented, never traps).
  EXPECT_EQ(d[6], static_cast<double>(static_cast<int32_t>(int64_t{10000000000})));
}

TEST(OpCast, SpecialValues) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  for (DataType to : {DataType::kInt64, DataType::kBool, DataType::kFloat16, DataType::kUInt8}) {
    OpCase c = cast(input({6}), to);
    c.inputs[0].values = {inf, -inf, nan, 65519.0, 65520.0, 1e-8};
    run_op_case(c);
  }
  for (DataType to : kAll) {  // float16 sources: infinities, NaN, the largest normal, -0, a subnormal
    OpCase c = cast(input({6}, DataType::kFloat16), to);
    c.inputs[0].values = {inf, -inf, nan, 65504.0, -0.0, 0x1p-24};
    run_op_case(c);
  }
  OpCase b = cast(input({4}), DataType::kBool);
  b.inputs[0].values = {nan, 0.0, -0.0, 1e-30};
  auto ref = reference_op(b);
  ASSERT_TRUE(ref.is_ok());
  EXPECT_EQ(ref->at(0).data, (std::vector<double>{1, 0, 0, 1}));
}

TEST(OpCast, Float16Rounding) {
  EXPECT_EQ(double_to_half(1.0), 0x3c00);
  EXPECT_EQ(double_to_half(-2.0), 0xc000);
  EXPECT_EQ(double_to_half(65504.0), 0x7bff);
  EXPECT_EQ(double_to_half(65520.0), 0x7c00);
  EXPECT_EQ(double_to_half(65519.99), 0x7bff);
  EXPECT_EQ(double_to_half(0x1p-24), 0x0001);   // smallest subnormal
  EXPECT_EQ(double_to_half(0x1p-25), 0x0000);   // tie rounds to even (0)
  EXPECT_EQ(double_to_half(0x1.8p-24), 0x0002); // tie rounds to even (2)
  EXPECT_EQ(double_to_half(1.0 + 0x1p-11), 0x3c00);  // tie between 1 and 1+2^-10: even
  EXPECT_EQ(double_to_half(1.0 + 0x1.8p-10), 0x3c02);
  EXPECT_EQ(double_to_half(0x1.ffcp-15), 0x0400);    // rounds up into the normal range
  EXPECT_EQ(float_to_half(65520.f), 0x7c00);
  EXPECT_EQ(float_to_half(std::nextafter(65520.f, 0.f)), 0x7bff);
  EXPECT_EQ(float_to_half(-0.f), 0x8000);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const double v = half_to_double(static_cast<uint16_t>(h));
    if (std::isnan(v)) continue;
    EXPECT_EQ(double_to_half(v), h) << h;
  }
}

TEST(OpCast, Float16RoundsFromDouble) {
  // Just above a tie at double precision: rounding through float32 first would land on the tie and
  // round to even (down); rounding straight from double rounds up.
  OpCase c = cast(input({5}, DataType::kFloat64), DataType::kFloat16);
  c.inputs[0].values = {1.0 + 0x1p-11 + 0x1p-40, 1.0 + 0x1p-11, 65519.999, 0x1p-25 + 0x1p-50, -(1.0 + 0x1.8p-10)};
  run_op_case(c);
  auto ref = reference_op(c);
  ASSERT_TRUE(ref.is_ok());
  EXPECT_EQ(ref->at(0).data[0], 1.0 + 0x1p-10);
  EXPECT_EQ(ref->at(0).data[1], 1.0);
}

TEST(OpCast, DynamicShapes) {
  OpCase c = cast(input({1, 5}), DataType::kInt64);
  c.more_shapes = {{{7, 5}}, {{64, 5}}};
  run_op_case(c);
  run_op_case(cast(input({0, 5}), DataType::kFloat16));
  run_op_case(cast(input({300, 301}, DataType::kInt64), DataType::kFloat32));  // parallel
}

TEST(OpCast, SaturateOnlyFromOpset19) {
  OpCase c = cast(input({3}), DataType::kFloat16, 19);
  c.attr("saturate", int64_t{1});
  run_op_case(c);
  OpCase old = cast(input({3}), DataType::kFloat16, 13);
  old.attr("saturate", int64_t{1});
  EXPECT_NE(check_op(old).message().find("Cast: attribute 'saturate' is not supported"), std::string::npos);
}

TEST(OpCast, Errors) {
  Status s = check_op(cast(input({3}), static_cast<DataType>(16)));  // bfloat16
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("target type 16"), std::string::npos) << s.to_string();
  OpCase no_to = cast(input({3}), DataType::kFloat32);
  no_to.attrs.erase("to");
  EXPECT_NE(check_op(no_to).message().find("'to' is required"), std::string::npos);
}

}  // namespace
}  // namespace kiln::test

namespace kiln::test {
namespace {

// The float32 fast path must round exactly like the double path on every kind of input.
TEST(OpCast, FloatToHalfFastPathMatchesDoublePath) {
  auto check = [](uint32_t bits) {
    const float f = std::bit_cast<float>(bits);
    const uint16_t fast = float_to_half(f), slow = double_to_half(f);
    if (std::isnan(f)) return (fast & 0x7c00) == 0x7c00 && (fast & 0x3ff) != 0;
    return fast == slow;
  };
  for (uint64_t b = 0; b <= 0xffffffffull; b += 997)
    ASSERT_TRUE(check(static_cast<uint32_t>(b))) << std::hex << b;
  // Exactly at, and one float ulp either side of, every half value and every midpoint between halves.
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float lo = static_cast<float>(half_to_double(static_cast<uint16_t>(h)));
    const float hi = static_cast<float>(half_to_double(static_cast<uint16_t>(h + 1)));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);
    for (float v : {lo, mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e9f)})
      for (float s : {v, -v}) ASSERT_TRUE(check(std::bit_cast<uint32_t>(s))) << s;
  }
}

}  // namespace
}  // namespace kiln::test
