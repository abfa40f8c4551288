#include "host_buffers.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

TEST(HostBuffer, AlignedAndZeroed) {
  HostBuffer b(100);
  ASSERT_TRUE(b.allocated());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b.data()[i], 0);
  HostBuffer empty(0);
  EXPECT_TRUE(empty.allocated());  // a valid address even for 0-element tensors
}

TEST(FillRandom, FloatsDeterministicInRangeAndNotZero) {
  HostBuffer a(4 * 1000), b(4 * 1000), c(4 * 1000);
  fill_random(a, DataType::kFloat32, 7);
  fill_random(b, DataType::kFloat32, 7);
  fill_random(c, DataType::kFloat32, 8);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
  EXPECT_NE(std::memcmp(a.data(), c.data(), a.size()), 0);
  const float* f = reinterpret_cast<const float*>(a.data());
  int zeros = 0;
  double sum = 0;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_GE(f[i], -1.0f);
    EXPECT_LE(f[i], 1.0f);
    zeros += f[i] == 0.0f;
    sum += f[i];
  }
  EXPECT_LT(zeros, 5);
  EXPECT_LT(std::abs(sum / 1000), 0.1);  // centred
}

TEST(FillRandom, IntsAreSmall) {
  HostBuffer b(8 * 100);
  fill_random(b, DataType::kInt64, 1);
  const int64_t* v = reinterpret_cast<const int64_t*>(b.data());
  bool nonzero = false;
  for (int i = 0; i < 100; ++i) {
    EXPECT_GE(v[i], 0);
    EXPECT_LE(v[i], 3);
    nonzero |= v[i] != 0;
  }
  EXPECT_TRUE(nonzero);
}

TEST(Half, RoundTrip) {
  for (float x : {0.0f, 1.0f, -1.0f, 0.5f, 65504.0f, -2.0f, 0.333251953125f, 6.103515625e-05f, 5.960464477539063e-08f}) {
    EXPECT_EQ(half_to_float(float_to_half(x)), x) << x;
  }
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(1e6f))));
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(half_to_float(0xc000), -2.0f);
}

TEST(LoadRawFile, SizeMismatchNamesEverything) {
  const std::string path = (std::filesystem::temp_directory_path() / "kiln_raw_test.bin").string();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  const char data[12] = {};
  std::fwrite(data, 1, sizeof(data), f);
  std::fclose(f);

  HostBuffer b(16);
  Status s = load_raw_file("input", path, b);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find(path), std::string::npos);
  EXPECT_NE(s.message().find("'input'"), std::string::npos);
  EXPECT_NE(s.message().find("has 12 bytes, expected 16"), std::string::npos);

  HostBuffer ok(12);
  EXPECT_TRUE(load_raw_file("input", path, ok).is_ok());
  std::filesystem::remove(path);

  Status missing = load_raw_file("input", "/nonexistent/kiln.bin", ok);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.to_string().find("/nonexistent/kiln.bin"), std::string::npos);
}

TEST(ValuesToJson, Types) {
  const float f[2] = {1.5f, -2.0f};
  EXPECT_EQ(values_to_json(reinterpret_cast<const uint8_t*>(f), DataType::kFloat32, 2).dump(), "[1.5,-2.0]");
  const int64_t i[2] = {3, -4};
  EXPECT_EQ(values_to_json(reinterpret_cast<const uint8_t*>(i), DataType::kInt64, 2).dump(), "[3,-4]");
  const uint8_t b[2] = {0, 1};
  EXPECT_EQ(values_to_json(b, DataType::kBool, 2).dump(), "[false,true]");
}

}  // namespace
}  // namespace kiln::cli
