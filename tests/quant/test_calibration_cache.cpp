#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cfloat>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "quant/calibration_cache.h"

namespace kiln::quant {
namespace {

constexpr const char* kTensorRtCache =
    "TRT-8601-EntropyCalibration2\n"
    "input: 3c8954be\n"
    "/Flatten_output_0: 3c8954be\n"
    "/fc1/Gemm_output_0: 3d6a3d24\n"
    "/relu/Relu_output_0: 3d1d4bc0\n"
    "onnx::Gemm_9: 3c92df5a\n"
    "(Unnamed Layer* 5) [Constant]_output: 3f800000\n";

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / fmt::format("kiln_calib_{}_{}", ::getpid(), name)).string();
}

Result<CalibrationCache> parse(std::string_view text, std::vector<std::string>* warnings = nullptr) {
  return parse_calibration_cache(text, CalibAlgo::kEntropy, warnings);
}

void expect_parse_error(std::string_view text, const std::string& fragment) {
  auto r = parse(text);
  ASSERT_FALSE(r.is_ok()) << text;
  EXPECT_EQ(r.status().code(), StatusCode::kParseError);
  EXPECT_NE(r.status().to_string().find(fragment), std::string::npos)
      << "'" << r.status().to_string() << "' lacks '" << fragment << "'";
}

TEST(CalibrationCache, ParsesATensorRtCache) {
  std::vector<std::string> warnings;
  auto r = parse(kTensorRtCache, &warnings);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(r->version, "8601");
  EXPECT_EQ(r->algorithm, "EntropyCalibration2");
  ASSERT_EQ(r->scales.size(), 6u);
  EXPECT_EQ(r->scales.at("(Unnamed Layer* 5) [Constant]_output"), 1.0f);
  EXPECT_EQ(std::bit_cast<uint32_t>(r->scales.at("input")), 0x3c8954beu);
  EXPECT_EQ(std::bit_cast<uint32_t>(r->scales.at("/fc1/Gemm_output_0")), 0x3d6a3d24u);
  EXPECT_EQ(std::bit_cast<uint32_t>(r->scales.at("onnx::Gemm_9")), 0x3c92df5au);
}

TEST(CalibrationCache, WriteReadRoundTripIsBitExact) {
  CalibrationCache cache;
  cache.algorithm = trt_algo_name(CalibAlgo::kPercentile);
  cache.scales = {{"/model/fc1/Gemm_output_0", 0.0123456789f},
                  {"x: y [0]", 3.0f / 127.0f},
                  {"name with spaces", 1e-30f},
                  {"denormal", std::bit_cast<float>(uint32_t{0x00000001})},
                  {"smallest normal", FLT_MIN},
                  {"largest", FLT_MAX},
                  {"a:b: c", 1.0f}};
  const std::string text = write_calibration_cache(cache);
  EXPECT_TRUE(text.starts_with("TRT-8601-PercentileCalibration\n")) << text;
  EXPECT_NE(text.find("denormal: 1\n"), std::string::npos) << text;  // TensorRT's unpadded hex
  EXPECT_EQ(write_calibration_cache(cache), text);                   // deterministic

  std::vector<std::string> warnings;
  auto r = parse_calibration_cache(text, CalibAlgo::kPercentile, &warnings);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(r->version, cache.version);
  EXPECT_EQ(r->algorithm, cache.algorithm);
  ASSERT_EQ(r->scales.size(), cache.scales.size());
  for (const auto& [name, scale] : cache.scales) {
    ASSERT_TRUE(r->scales.count(name)) << name;
    EXPECT_EQ(std::bit_cast<uint32_t>(r->scales.at(name)), std::bit_cast<uint32_t>(scale)) << name;
  }
}

TEST(CalibrationCache, FileRoundTrip) {
  const std::string path = temp_path("roundtrip.cache");
  CalibrationCache cache;
  cache.algorithm = trt_algo_name(CalibAlgo::kMinMax);
  cache.scales = {{"input", 0.5f}, {"(Unnamed Layer* 5) [Constant]_output", 2.0f}};
  ASSERT_TRUE(write_calibration_cache_file(path, cache).is_ok());
  auto r = read_calibration_cache_file(path, CalibAlgo::kMinMax, nullptr);
  std::filesystem::remove(path);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->scales, cache.scales);
}

TEST(CalibrationCache, MissingFileNamesThePath) {
  auto r = read_calibration_cache_file("/nonexistent/kiln/calib.cache", CalibAlgo::kEntropy, nullptr);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().to_string().find("/nonexistent/kiln/calib.cache"), std::string::npos);
}

TEST(CalibrationCache, UnwritablePathIsAnError) {
  CalibrationCache cache;
  cache.algorithm = "EntropyCalibration2";
  Status st = write_calibration_cache_file("/nonexistent/kiln/dir/calib.cache", cache);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.to_string().find("/nonexistent/kiln/dir/calib.cache"), std::string::npos);
}

TEST(CalibrationCache, OtherVersionOrAlgorithmWarns) {
  std::vector<std::string> warnings;
  auto r = parse("TRT-8510-EntropyCalibration2\ninput: 3c8954be\n", &warnings);
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("8510"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("8601"), std::string::npos) << warnings[0];

  warnings.clear();
  r = parse("TRT-8601-MinMaxCalibration\ninput: 3c8954be\n", &warnings);
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("MinMaxCalibration"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("EntropyCalibration2"), std::string::npos) << warnings[0];

  // The file variant names the file in its warnings.
  const std::string path = temp_path("other.cache");
  std::ofstream(path) << "TRT-100300-LegacyCalibration\n";
  warnings.clear();
  r = read_calibration_cache_file(path, CalibAlgo::kEntropy, &warnings);
  std::filesystem::remove(path);
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find(path), std::string::npos) << warnings[0];
}

TEST(CalibrationCache, TolerantWhitespace) {
  auto r = parse("\r\nTRT-8601-EntropyCalibration2\r\n\r\ninput: 3C8954BE\r\n  \nout: 3f800000 \n\n");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(std::bit_cast<uint32_t>(r->scales.at("input")), 0x3c8954beu);
  EXPECT_EQ(r->scales.at("out"), 1.0f);
}

TEST(CalibrationCache, BadHeaders) {
  expect_parse_error("", "header");
  expect_parse_error("\n\n", "header");
  expect_parse_error("input: 3f800000\n", "line 1 'input: 3f800000': not a calibration cache header");
  expect_parse_error("TRT-8601\n", "line 1");
  expect_parse_error("TRT-8601-\n", "line 1");
}

TEST(CalibrationCache, MalformedLinesNameTheLine) {
  const std::string header = "TRT-8601-EntropyCalibration2\n";
  expect_parse_error(header + "input: 3f800000\nno separator here\n", "line 3 'no separator here'");
  expect_parse_error(header + "input 3f800000\n", "line 2");
  expect_parse_error(header + "input: 3g800000\n", "line 2 'input: 3g800000': scale '3g800000' is not 1 to 8 hex");
  expect_parse_error(header + "input: 13f800000\n", "line 2");  // 9 digits
  expect_parse_error(header + "input: \n", "line 2");
  expect_parse_error(header + "input: -3f80000\n", "line 2");
  expect_parse_error(header + "input: 0x3f80000\n", "line 2");
  expect_parse_error(header + "input: 0\n", "not a finite positive float");         // zero
  expect_parse_error(header + "input: bf800000\n", "not a finite positive float");  // -1
  expect_parse_error(header + "input: 7f800000\n", "not a finite positive float");  // +inf
  expect_parse_error(header + "input: 7fc00000\n", "not a finite positive float");  // NaN
  expect_parse_error(header + ": 3f800000\n", "empty tensor name");
}

TEST(CalibrationCache, DuplicateTensorIsAnError) {
  expect_parse_error("TRT-8601-EntropyCalibration2\nx: 3f800000\ny: 3f800000\nx: 3f000000\n",
                     "line 4: tensor 'x' appears a second time");
}

}  // namespace
}  // namespace kiln::quant
