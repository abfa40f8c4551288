// Summary statistics of a series of timings, computed the way trtexec computes them so numbers are
// comparable: percentiles pick a sample (no interpolation), the median averages the middle pair, and
// the coefficient of variation uses the population standard deviation.
#pragma once
#include <cstddef>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln::cli {

struct TimingStats {
  size_t count = 0;
  double min = 0, max = 0, mean = 0, median = 0;
  double p90 = 0, p95 = 0, p99 = 0;
  double stddev = 0;
  double cv_percent = 0;  // stddev / mean * 100; 0 when mean is 0
  double total = 0;
};

// All fields stay 0 for an empty series.
TimingStats compute_stats(std::vector<double> samples);

// trtexec's percentile: drop the top (1 - p/100) fraction of sorted samples and take the largest rest.
// `sorted` must be sorted ascending and non-empty; p in [0, 100].
double percentile_of_sorted(const std::vector<double>& sorted, double p);
double median_of_sorted(const std::vector<double>& sorted);

// {"min":..,"max":..,"mean":..,"median":..,"percentile90":..,...,"stddev":..,"cv_percent":..}
nlohmann::ordered_json stats_to_json(const TimingStats& s);

}  // namespace kiln::cli
