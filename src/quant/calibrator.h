// INT8 post-training calibration of one tensor's range: what |x| value maps to 127. Two passes over the
// calibration data, as TensorRT's calibrators do: pass 1 finds the largest |x|, pass 2 fills a histogram
// of |x| over [0, that max], from which the entropy and percentile algorithms choose a clipping point.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln::quant {

enum class CalibAlgo { kEntropy, kMinMax, kPercentile };

// "entropy", "minmax", "percentile"; the error lists the valid names.
Result<CalibAlgo> calib_algo_from_name(std::string_view name);
const char* calib_algo_name(CalibAlgo algo);
// The algorithm name in a TensorRT calibration cache header: "EntropyCalibration2", "MinMaxCalibration",
// and "PercentileCalibration", which Kiln defines (TensorRT has no percentile cache type).
const char* trt_algo_name(CalibAlgo algo);

class TensorRangeCollector {
 public:
  static constexpr int kHistogramBins = 2048;
  static constexpr int kQuantizedBins = 128;  // int8 magnitudes 0..127: the entropy search's target

  // Pass 1: running max |x|. Non-finite values are skipped (they would make every range useless) but
  // counted, so the caller can report them.
  void observe_max(const float* x, size_t n);
  // Pass 2: |x| into kHistogramBins bins over [0, max from pass 1], fixed at the first call; values
  // above it (data that changed between passes) go to the last bin. Non-finite values are skipped.
  void observe_histogram(const float* x, size_t n);

  // The clipping threshold. kMinMax: the pass-1 max. kPercentile: the upper edge of the first bin where
  // the cumulative histogram reaches `percentile` % (clamped to [0, 100]). kEntropy: TensorRT's
  // EntropyCalibration2 KL-divergence search (see calibrator.cpp). All are 0 when every value was 0;
  // the histogram algorithms fall back to the pass-1 max when pass 2 never ran.
  float amax(CalibAlgo algo, double percentile = 99.99) const;

  float max_abs() const { return max_abs_; }
  int64_t non_finite() const { return non_finite_; }
  bool has_histogram() const { return !histogram_.empty(); }

  // amax / 127, usable as a divisor: an amax of 0 (all-zero tensor: any scale represents it exactly) or
  // a non-finite one gives 1/127, and tiny amaxes are floored at FLT_MIN so 1/scale stays finite.
  static float scale_from_amax(float amax);

 private:
  float percentile_amax(double percentile) const;
  float entropy_amax() const;

  float max_abs_ = 0;
  int64_t non_finite_ = 0;
  float histogram_range_ = 0;       // max_abs_ when pass 2 started
  std::vector<int64_t> histogram_;  // empty until pass 2
};

}  // namespace kiln::quant
