// Host IO's staging: the float32 -> float16 conversion, every path bit for bit as float_to_half (NaNs
// included: random bit patterns hold many, with payloads and both signs), the int8/uint8 quantizer byte for
// byte as the QuantizeLinear kernels' formula, and the streaming copy, at unaligned starts and odd lengths
// (the head and tail around the streaming stores).
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/float16.h"
#include "ops/quantize.h"
#include "runtime/host_staging.h"

namespace kiln {
namespace {

std::vector<float> test_values() {
  std::vector<float> v = {0.f, -0.f, 1.f, -1.f, 65504.f, 65519.f, 65520.f, -65520.f, 1e-8f, -1e-8f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min(), 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f,
                          6.1035156e-05f, 6.1035152e-05f, 1.0009765625f, 1.00048828125f, 1.00146484375f};
  std::mt19937 rng(42);
  for (int i = 0; i < 200000; ++i) v.push_back(std::bit_cast<float>(static_cast<uint32_t>(rng())));
  std::normal_distribution<float> normal(0.f, 3.f);
  for (int i = 0; i < 50000; ++i) v.push_back(normal(rng));
  return v;
}

TEST(HostStaging, EveryPathMatchesFloatToHalf) {
  const std::vector<float> x = test_values();
  int paths = 0;
  for (const char* isa : {"avx512f", "f16c", "scalar"}) {
    for (size_t start : {size_t{0}, size_t{1}, size_t{3}, size_t{7}}) {
      for (size_t len : {x.size() - start, size_t{0}, size_t{5}, size_t{17}, size_t{31}, size_t{1000}}) {
        std::vector<uint16_t> y(start + len + 1, 0xdead);  // y starts at the same misalignment as x
        if (!convert_f32_to_f16_using(isa, x.data() + start, y.data() + start, len)) goto next_isa;
        for (size_t i = 0; i < len; ++i) {
          const uint16_t want = float_to_half(x[start + i]), got = y[start + i];
          ASSERT_EQ(got, want) << isa << " element " << start + i << " = " << x[start + i];  // NaNs too
        }
        ASSERT_EQ(y[start + len], 0xdead) << isa << ": wrote past the end";
        if (start > 0) ASSERT_EQ(y[start - 1], 0xdead) << isa << ": wrote before the start";
      }
    }
    ++paths;
  next_isa:;
  }
  EXPECT_GE(paths, 1);
  std::printf("host convert: %d paths checked; convert_f32_to_f16 uses %s here\n", paths, convert_f32_to_f16_isa());
}

TEST(HostStaging, StreamingCopyIsMemcpy) {
  std::vector<uint8_t> src(100000);
  std::mt19937 rng(7);
  for (auto& b : src) b = static_cast<uint8_t>(rng());
  for (size_t dst_off : {size_t{0}, size_t{1}, size_t{13}, size_t{63}})
    for (size_t src_off : {size_t{0}, size_t{5}})
      for (size_t len : {size_t{0}, size_t{1}, size_t{31}, size_t{64}, size_t{65}, size_t{4095}, size_t{99000}}) {
        std::vector<uint8_t> dst(len + dst_off + 1, 0xab);
        copy_streaming(dst.data() + dst_off, src.data() + src_off, len);
        ASSERT_EQ(std::memcmp(dst.data() + dst_off, src.data() + src_off, len), 0) << dst_off << " " << src_off << " " << len;
        ASSERT_EQ(dst[dst_off + len], 0xab) << "wrote past the end";
        if (dst_off) ASSERT_EQ(dst[dst_off - 1], 0xab) << "wrote before the start";
      }
}

// The host quantizer against the QuantizeLinear kernels' scalar formula (ops/quantize.h), byte for byte: int8
// and uint8, zero points, ties to even, saturation, NaN -> 0, infinities and random bit patterns, at unaligned
// starts and odd lengths.
TEST(HostStaging, QuantizeMatchesTheKernelFormula) {
  std::vector<float> v = test_values();
  for (float t : {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, 127.5f, -128.5f, 254.5f, 255.5f}) v.push_back(t * 0.5f);
  struct Case {
    DataType q;
    float scale;
    int32_t zero_point;
  };
  for (const Case& k : {Case{DataType::kInt8, 0.5f, 0}, Case{DataType::kInt8, 0.0159265f, 0}, Case{DataType::kInt8, 0.1f, -3},
                        Case{DataType::kUInt8, 0.5f, 0}, Case{DataType::kUInt8, 0.0078f, 128}, Case{DataType::kUInt8, 3.f, 255}}) {
    const int32_t lo = k.q == DataType::kInt8 ? -128 : 0, hi = k.q == DataType::kInt8 ? 127 : 255;
    for (size_t start : {size_t{0}, size_t{1}, size_t{7}}) {
      const size_t n = v.size() - start - 3;
      std::vector<uint8_t> got(n + 17, 0xee);
      uint8_t* y = got.data() + 1 + start % 5;  // unaligned destinations too
      quantize_f32(v.data() + start, y, n, k.q, k.scale, k.zero_point);
      for (size_t i = 0; i < n; ++i) {
        const float x = v[start + i];
        const auto want = static_cast<uint8_t>(quantize_saturate(rintf(x / k.scale) + static_cast<float>(k.zero_point), lo, hi));
        ASSERT_EQ(y[i], want) << "x " << x << " (bits " << std::bit_cast<uint32_t>(x) << "), scale " << k.scale << ", zero point "
                              << k.zero_point << ", i " << i;
      }
      EXPECT_EQ(y[n], 0xee) << "wrote past the end";
    }
  }
  // Spot checks of the formula itself: ties to even, saturation, NaN.
  const float in[] = {1.25f, 1.75f, -1.25f, 1000.f, -1000.f, std::numeric_limits<float>::quiet_NaN()};
  uint8_t out[6];
  quantize_f32(in, out, 6, DataType::kInt8, 0.5f, 0);
  EXPECT_EQ(static_cast<int8_t>(out[0]), 2);
  EXPECT_EQ(static_cast<int8_t>(out[1]), 4);
  EXPECT_EQ(static_cast<int8_t>(out[2]), -2);
  EXPECT_EQ(static_cast<int8_t>(out[3]), 127);
  EXPECT_EQ(static_cast<int8_t>(out[4]), -128);
  EXPECT_EQ(static_cast<int8_t>(out[5]), 0);
}

TEST(HostStaging, UnknownPathRefused) {
  float x = 1.f;
  uint16_t y = 0;
  EXPECT_FALSE(convert_f32_to_f16_using("neon", &x, &y, 1));
  EXPECT_EQ(y, 0);
}

}  // namespace
}  // namespace kiln
