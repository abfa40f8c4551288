#include "timing_stats.h"

#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

TEST(TimingStats, EmptyIsAllZero) {
  TimingStats s = compute_stats({});
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.mean, 0);
  EXPECT_EQ(s.cv_percent, 0);
}

TEST(TimingStats, OneToHundred) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // unsorted on purpose
  TimingStats s = compute_stats(v);
  EXPECT_EQ(s.count, 100u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
  EXPECT_DOUBLE_EQ(s.median, 50.5);
  EXPECT_DOUBLE_EQ(s.total, 5050);
  // trtexec: exclude floor((1-p)*n) largest, take the largest remaining.
  EXPECT_DOUBLE_EQ(s.p90, 90);
  EXPECT_DOUBLE_EQ(s.p95, 95);
  EXPECT_DOUBLE_EQ(s.p99, 99);
}

TEST(TimingStats, SmallSeries) {
  TimingStats s = compute_stats({3, 1, 2});
  EXPECT_DOUBLE_EQ(s.median, 2);
  EXPECT_DOUBLE_EQ(s.p99, 3);  // exclude 0 of 3
  EXPECT_DOUBLE_EQ(s.p90, 3);
  TimingStats one = compute_stats({7});
  EXPECT_DOUBLE_EQ(one.p90, 7);
  EXPECT_DOUBLE_EQ(one.median, 7);
  EXPECT_DOUBLE_EQ(one.stddev, 0);
}

TEST(TimingStats, PercentileOfTen) {
  std::vector<double> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_DOUBLE_EQ(percentile_of_sorted(v, 90), 9);   // exclude 1
  EXPECT_DOUBLE_EQ(percentile_of_sorted(v, 50), 5);   // exclude 5
  EXPECT_DOUBLE_EQ(percentile_of_sorted(v, 0), 1);    // clamps at the smallest
  EXPECT_DOUBLE_EQ(percentile_of_sorted(v, 100), 10);
}

TEST(TimingStats, CoefficientOfVariationIsPopulation) {
  TimingStats s = compute_stats({1, 3});
  EXPECT_DOUBLE_EQ(s.stddev, 1);
  EXPECT_DOUBLE_EQ(s.cv_percent, 50);
}

TEST(TimingStats, Json) {
  nlohmann::json j = stats_to_json(compute_stats({1, 2, 3}));
  EXPECT_DOUBLE_EQ(j["mean"].get<double>(), 2);
  EXPECT_TRUE(j.contains("percentile99"));
  EXPECT_EQ(j["count"].get<int>(), 3);
}

}  // namespace
}  // namespace kiln::cli
