#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "quant/calibrator.h"

namespace kiln::quant {
namespace {

// Runs both passes over x, in chunks the way a calibrator sees batches.
TensorRangeCollector collect(const std::vector<float>& x) {
  TensorRangeCollector c;
  constexpr size_t kChunk = 7919;
  for (size_t i = 0; i < x.size(); i += kChunk) c.observe_max(x.data() + i, std::min(kChunk, x.size() - i));
  for (size_t i = 0; i < x.size(); i += kChunk) c.observe_histogram(x.data() + i, std::min(kChunk, x.size() - i));
  return c;
}

std::vector<float> gaussian_with_outliers() {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(100000);
  for (float& v : x) v = normal(rng);
  x.insert(x.end(), {50.0f, -50.0f, 50.0f, -50.0f});
  return x;
}

// The p-th percentile of |x| by sorting, what the histogram approximates to within a bin.
float abs_percentile(std::vector<float> x, double p) {
  for (float& v : x) v = std::fabs(v);
  std::sort(x.begin(), x.end());
  return x[static_cast<size_t>(std::ceil(x.size() * p / 100.0)) - 1];
}

TEST(CalibAlgoNames, RoundTrip) {
  for (CalibAlgo a : {CalibAlgo::kEntropy, CalibAlgo::kMinMax, CalibAlgo::kPercentile}) {
    auto parsed = calib_algo_from_name(calib_algo_name(a));
    ASSERT_TRUE(parsed.is_ok());
    EXPECT_EQ(*parsed, a);
  }
  EXPECT_STREQ(trt_algo_name(CalibAlgo::kEntropy), "EntropyCalibration2");
  EXPECT_STREQ(trt_algo_name(CalibAlgo::kMinMax), "MinMaxCalibration");
  EXPECT_STREQ(trt_algo_name(CalibAlgo::kPercentile), "PercentileCalibration");
}

TEST(CalibAlgoNames, UnknownNameListsValidOnes) {
  for (const char* bad : {"", "Entropy", "max", "entropy2"}) {
    auto r = calib_algo_from_name(bad);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(fmt::format("'{}'", bad)), std::string::npos);
    EXPECT_NE(r.status().message().find("entropy, minmax, percentile"), std::string::npos);
  }
}

TEST(CalibratorGaussian, MinMaxKeepsTheOutlier) {
  const auto c = collect(gaussian_with_outliers());
  EXPECT_EQ(c.amax(CalibAlgo::kMinMax), 50.0f);
  EXPECT_EQ(c.non_finite(), 0);
}

TEST(CalibratorGaussian, EntropyClipsTheOutlier) {
  const float amax = collect(gaussian_with_outliers()).amax(CalibAlgo::kEntropy);
  EXPECT_GT(amax, 2.5f);
  EXPECT_LT(amax, 10.0f);
}

TEST(CalibratorGaussian, PercentileMatchesSortedData) {
  const auto x = gaussian_with_outliers();
  const auto c = collect(x);
  const float bin_width = 50.0f / TensorRangeCollector::kHistogramBins;
  for (double p : {99.99, 99.0}) {
    const float expected = abs_percentile(x, p);
    const float got = c.amax(CalibAlgo::kPercentile, p);
    // The bin's upper edge: at or above the exact value, by less than a bin (plus rounding).
    EXPECT_GE(got, expected - 1e-4f) << p;
    EXPECT_LE(got, expected + 2 * bin_width) << p;
  }
  EXPECT_NEAR(c.amax(CalibAlgo::kPercentile, 99.99), 3.9f, 0.25f);
  EXPECT_NEAR(c.amax(CalibAlgo::kPercentile, 99.0), 2.576f, 0.06f);
}

TEST(CalibratorUniform, EntropyKeepsNearlyTheWholeRange) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(100000);
  for (float& v : x) v = uniform(rng);
  x.push_back(1.0f);
  const auto c = collect(x);
  EXPECT_EQ(c.amax(CalibAlgo::kMinMax), 1.0f);
  EXPECT_GE(c.amax(CalibAlgo::kEntropy), 0.9f);
  EXPECT_LE(c.amax(CalibAlgo::kEntropy), 1.0f);
}

TEST(CalibratorEntropy, ReluLikeDataIsNotDominatedByZeros) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(100000);
  for (float& v : x) v = std::max(0.0f, normal(rng));
  const float amax = collect(x).amax(CalibAlgo::kEntropy);
  EXPECT_GT(amax, 2.0f);
  EXPECT_LE(amax, collect(x).max_abs());
}

TEST(CalibratorEdgeCases, AllZeroTensor) {
  const auto c = collect(std::vector<float>(1000, 0.0f));
  for (CalibAlgo a : {CalibAlgo::kEntropy, CalibAlgo::kMinMax, CalibAlgo::kPercentile}) {
    EXPECT_EQ(c.amax(a), 0.0f) << calib_algo_name(a);
  }
  const float scale = TensorRangeCollector::scale_from_amax(0.0f);
  EXPECT_TRUE(std::isfinite(scale));
  EXPECT_GT(scale, 0.0f);
  EXPECT_TRUE(std::isfinite(1.0f / scale));
}

TEST(CalibratorEdgeCases, EmptyCollector) {
  TensorRangeCollector c;
  EXPECT_EQ(c.amax(CalibAlgo::kEntropy), 0.0f);
  EXPECT_FALSE(c.has_histogram());
}

TEST(CalibratorEdgeCases, NonFiniteValuesAreCountedAndIgnored) {
  std::vector<float> x = {1.0f,
                          -2.0f,
                          std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          0.5f};
  const auto c = collect(x);
  EXPECT_EQ(c.non_finite(), 3);
  EXPECT_EQ(c.amax(CalibAlgo::kMinMax), 2.0f);
  EXPECT_TRUE(std::isfinite(c.amax(CalibAlgo::kEntropy)));
  EXPECT_LE(c.amax(CalibAlgo::kPercentile, 100.0), 2.0f);
}

TEST(CalibratorEdgeCases, HistogramAlgorithmsWithoutPassTwoUseTheMax) {
  TensorRangeCollector c;
  const float x[] = {0.25f, -3.0f};
  c.observe_max(x, 2);
  EXPECT_EQ(c.amax(CalibAlgo::kEntropy), 3.0f);
  EXPECT_EQ(c.amax(CalibAlgo::kPercentile), 3.0f);
}

TEST(CalibratorEdgeCases, ScaleFromAmax) {
  EXPECT_EQ(TensorRangeCollector::scale_from_amax(127.0f), 1.0f);
  for (float amax : {-1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 1e-44f}) {
    const float s = TensorRangeCollector::scale_from_amax(amax);
    EXPECT_GT(s, 0.0f) << amax;
    EXPECT_TRUE(std::isfinite(1.0f / s)) << amax;
  }
}

}  // namespace
}  // namespace kiln::quant
