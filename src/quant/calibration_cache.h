// TensorRT's text calibration cache, so that a cache from trtexec/TensorRT can be used by Kiln and the
// other way round:
//   TRT-8601-EntropyCalibration2
//   <tensor name>: <hex>
// one line per tensor, <hex> being the float32 scale's bits as a hex integer without 0x (amax =
// scale * 127). Names may contain spaces, brackets and colons: a line splits at its LAST ": ".
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"
#include "quant/calibrator.h"

namespace kiln::quant {

// What Kiln writes: the TensorRT 8.6 layout, which newer TensorRT reads too.
inline constexpr const char* kCalibrationCacheVersion = "8601";

struct CalibrationCache {
  std::string version = kCalibrationCacheVersion;
  std::string algorithm;                // TensorRT's name, e.g. "EntropyCalibration2" (trt_algo_name)
  std::map<std::string, float> scales;  // by tensor name: sorted, so writing is deterministic
};

// Fails on a missing or malformed header, a malformed line (no ": ", not 1-8 hex digits, a scale that
// is not a finite positive float) naming its line number and text, and a duplicate tensor name. A header
// of another version or algorithm than `expected` is not an error: *warnings (if given) says what was
// found and what was expected.
Result<CalibrationCache> parse_calibration_cache(std::string_view text, CalibAlgo expected,
                                                 std::vector<std::string>* warnings);
std::string write_calibration_cache(const CalibrationCache& cache);

// The file variants; errors and warnings name the path. A missing file is kNotFound.
Result<CalibrationCache> read_calibration_cache_file(const std::string& path, CalibAlgo expected,
                                                     std::vector<std::string>* warnings);
// Writes atomically (temporary file + rename): an interrupted build never leaves a torn cache.
Status write_calibration_cache_file(const std::string& path, const CalibrationCache& cache);

}  // namespace kiln::quant
