#include "timing_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kiln::cli {

double percentile_of_sorted(const std::vector<double>& sorted, double p) {
  const auto all = static_cast<long>(sorted.size());
  // The epsilon keeps (1 - 0.9) * 100 = 9.999... from truncating to 9 (trtexec's float math gives 10).
  const auto exclude = static_cast<long>((1.0 - p / 100.0) * static_cast<double>(all) + 1e-9);
  return sorted[static_cast<size_t>(std::max(all - 1 - exclude, 0L))];
}

double median_of_sorted(const std::vector<double>& sorted) {
  const size_t m = sorted.size() / 2;
  if (sorted.size() % 2 == 1) return sorted[m];
  return (sorted[m - 1] + sorted[m]) / 2.0;
}

TimingStats compute_stats(std::vector<double> samples) {
  TimingStats s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  s.min = samples.front();
  s.max = samples.back();
  s.total = std::accumulate(samples.begin(), samples.end(), 0.0);
  s.mean = s.total / static_cast<double>(s.count);
  s.median = median_of_sorted(samples);
  s.p90 = percentile_of_sorted(samples, 90);
  s.p95 = percentile_of_sorted(samples, 95);
  s.p99 = percentile_of_sorted(samples, 99);
  double sq = 0;
  for (double x : samples) sq += (x - s.mean) * (x - s.mean);
  s.stddev = std::sqrt(sq / static_cast<double>(s.count));
  s.cv_percent = s.mean > 0 ? s.stddev / s.mean * 100.0 : 0.0;
  return s;
}

nlohmann::ordered_json stats_to_json(const TimingStats& s) {
  return {{"min", s.min},           {"max", s.max},           {"mean", s.mean},
          {"median", s.median},     {"percentile90", s.p90},  {"percentile95", s.p95},
          {"percentile99", s.p99},  {"stddev", s.stddev},     {"cv_percent", s.cv_percent},
          {"count", s.count}};
}

}  // namespace kiln::cli
