// INT8 calibration: runs the optimized FP32 network on the CPU over calibration batches and derives an
// activation scale (amax / 127) for each requested tensor with the chosen calibrator.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/builder.h"
#include "kiln/runtime.h"
#include "kiln/status.h"

namespace kiln::quant {

struct CalibrationResult {
  std::map<std::string, float> scales;  // tensor name -> scale
  int64_t samples = 0;
  std::string summary;                  // e.g. "entropy over 2048 samples in 8 batches (0.4 s)"
};

// g: the optimized graph (before the INT8 rewrite); values: tensors to calibrate.
Result<CalibrationResult> calibrate(const Graph& g, const std::vector<ShapeProfile>& profiles,
                                    const std::vector<int>& values, const BuilderConfig::Int8& opts);

}  // namespace kiln::quant
