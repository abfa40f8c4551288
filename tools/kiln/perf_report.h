// The numbers `kiln run` reports, in trtexec's shapes: the "=== Performance summary ===" block, the
// --exportTimes per-run records and the Kiln --exportJSON summary.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "timing_stats.h"

namespace kiln::cli {

// One timed inference: host start/end in ms since the first timed run started, and stage durations.
// On the CPU an inference is one synchronous execute(): enqueue = compute = end - start, no H2D/D2H.
// On a GPU the stages come from CUDA events: H2D copies, GPU compute, D2H copies; enqueue is the host
// time of the enqueue call.
struct TimedRun {
  double start_ms = 0;
  double end_ms = 0;
  double enqueue_ms = 0;
  double h2d_ms = 0, compute_ms = 0, d2h_ms = 0;
  bool gpu = false;
};

struct PerfSummary {
  int64_t batch = 1;
  size_t runs = 0;
  double walltime_s = 0;      // first start to last end
  double total_compute_s = 0;  // sum of per-run latencies
  double qps = 0;              // runs / walltime
  double samples_per_s = 0;    // qps * batch
  bool gpu = false;
  // Latency: CPU = host end - start; GPU = H2D + compute + D2H (trtexec's definition).
  TimingStats latency, enqueue, h2d, compute, d2h;
};

PerfSummary summarize(const std::vector<TimedRun>& runs, int64_t batch);

// Latency CV above this prints trtexec's instability warning.
constexpr double kUnstableCvPercent = 1.0;

// The "[I] === Performance summary ===" block and, when unstable, the "[W]" lines. Ends with '\n'.
std::string format_summary(const PerfSummary& s);
// "min = 0.0123 ms, max = ..., percentile(99%) = ... ms"
std::string format_stats_ms(const TimingStats& s);

// trtexec --exportTimes: one object per run; H2D/D2H are empty intervals on the CPU.
nlohmann::ordered_json times_to_json(const std::vector<TimedRun>& runs);

}  // namespace kiln::cli
