#include "quant/calibrator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

namespace kiln::quant {

Result<CalibAlgo> calib_algo_from_name(std::string_view name) {
  for (CalibAlgo a : {CalibAlgo::kEntropy, CalibAlgo::kMinMax, CalibAlgo::kPercentile}) {
    if (name == calib_algo_name(a)) return a;
  }
  return Status(StatusCode::kInvalidArgument,
                fmt::format("unknown calibration algorithm '{}' (valid: entropy, minmax, percentile)", name));
}

const char* calib_algo_name(CalibAlgo algo) {
  switch (algo) {
    case CalibAlgo::kEntropy: return "entropy";
    case CalibAlgo::kMinMax: return "minmax";
    case CalibAlgo::kPercentile: return "percentile";
  }
  return "unknown";
}

const char* trt_algo_name(CalibAlgo algo) {
  switch (algo) {
    case CalibAlgo::kEntropy: return "EntropyCalibration2";
    case CalibAlgo::kMinMax: return "MinMaxCalibration";
    case CalibAlgo::kPercentile: return "PercentileCalibration";
  }
  return "unknown";
}

void TensorRangeCollector::observe_max(const float* x, size_t n) {
  float m = max_abs_;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      ++non_finite_;
      continue;
    }
    m = std::max(m, std::fabs(x[i]));
  }
  max_abs_ = m;
}

void TensorRangeCollector::observe_histogram(const float* x, size_t n) {
  if (histogram_.empty()) {
    histogram_.assign(kHistogramBins, 0);
    histogram_range_ = max_abs_;
  }
  // With a zero range every finite value is 0 (or arrived after pass 1): all go to bin 0 / the last bin.
  const double bins_per_unit = histogram_range_ > 0 ? kHistogramBins / double{histogram_range_} : 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) continue;
    const double a = std::fabs(double{x[i]});
    const double bin = histogram_range_ > 0 ? a * bins_per_unit : (a > 0 ? kHistogramBins : 0);
    ++histogram_[static_cast<size_t>(std::min(bin, double{kHistogramBins - 1}))];
  }
}

float TensorRangeCollector::amax(CalibAlgo algo, double percentile) const {
  if (max_abs_ == 0) return 0;
  if (algo == CalibAlgo::kMinMax || histogram_.empty() || histogram_range_ == 0) return max_abs_;
  return algo == CalibAlgo::kPercentile ? percentile_amax(percentile) : entropy_amax();
}

float TensorRangeCollector::percentile_amax(double percentile) const {
  int64_t total = 0;
  for (int64_t c : histogram_) total += c;
  if (total == 0) return max_abs_;
  const double target = total * std::clamp(percentile, 0.0, 100.0) / 100.0;
  const double bin_width = double{histogram_range_} / kHistogramBins;
  int64_t cumulative = 0;
  for (int b = 0; b < kHistogramBins; ++b) {
    cumulative += histogram_[b];
    if (cumulative >= target && cumulative > 0) return static_cast<float>((b + 1) * bin_width);
  }
  return histogram_range_;
}

// EntropyCalibration2, as TensorRT describes it and NVIDIA's pytorch-quantization implements it: for each
// candidate threshold of i bins, P is the histogram's first i bins with everything beyond folded into
// the last one (what clipping at that threshold does), Q is the same bins quantized to 128 levels
// (each level's mass spread evenly over its non-empty bins). The i with the smallest KL(P || Q) wins;
// on ties the largest i (less clipping). amax is i * bin_width: the upper edge of the last kept bin, so
// every value the kept bins hold is representable without clipping.
float TensorRangeCollector::entropy_amax() const {
  std::vector<double> hist(histogram_.begin(), histogram_.end());
  // As pytorch-quantization does: the zero bin (huge after ReLU) takes its neighbour's count, else it
  // dominates the divergence and pushes the threshold far too low.
  hist[0] = hist[1];
  std::vector<double> suffix(kHistogramBins + 1, 0.0);  // suffix[i] = sum(hist[i:])
  for (int b = kHistogramBins - 1; b >= 0; --b) suffix[b] = suffix[b + 1] + hist[b];
  if (suffix[0] == 0) return max_abs_;

  // Where Q is 0 but P is not (only possible in P's last bin, which holds the outliers), KL is infinite;
  // a tiny Q keeps it finite and very large, as the usual implementations do.
  constexpr double kEpsilon = 1e-12;
  std::vector<double> q(kHistogramBins);
  double best_kl = std::numeric_limits<double>::infinity();
  int best_bins = kHistogramBins;
  for (int i = kQuantizedBins; i <= kHistogramBins; ++i) {
    // Q: bins j in [0, i) merged into level j * 128 / i, spread over the level's non-empty bins.
    for (int level_begin = 0, level = 0; level < kQuantizedBins; ++level) {
      const int level_end = static_cast<int>((int64_t{level + 1} * i + kQuantizedBins - 1) / kQuantizedBins);
      double mass = 0;
      int nonzero = 0;
      for (int j = level_begin; j < level_end; ++j) {
        mass += hist[j];
        nonzero += hist[j] != 0;
      }
      for (int j = level_begin; j < level_end; ++j) q[j] = hist[j] != 0 ? mass / nonzero : 0.0;
      level_begin = level_end;
    }
    const double p_total = suffix[0];
    const double q_total = suffix[0] - suffix[i];
    if (q_total == 0) continue;  // all mass beyond i: this threshold clips everything
    double kl = 0;
    for (int j = 0; j < i; ++j) {
      const double p = (j == i - 1 ? hist[j] + suffix[i] : hist[j]) / p_total;
      if (p == 0) continue;
      kl += p * std::log(p / std::max(q[j] / q_total, kEpsilon));
    }
    if (kl <= best_kl) {
      best_kl = kl;
      best_bins = i;
    }
  }
  return static_cast<float>(best_bins * (double{histogram_range_} / kHistogramBins));
}

float TensorRangeCollector::scale_from_amax(float amax) {
  if (!(amax > 0) || !std::isfinite(amax)) return 1.0f / 127.0f;
  return std::max(amax / 127.0f, FLT_MIN);
}

}  // namespace kiln::quant
