// The numbers `kiln run` reports, in trtexec's shapes: the "=== Performance summary ===" block, the
// --exportTimes per-run records and the Kiln --exportJSON summary.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "timing_stats.h"

namespace kiln::cli {

// One timed execute(), in ms since the first timed run started.
struct TimedRun {
  double start_ms = 0;
  double end_ms = 0;
};

struct PerfSummary {
  int64_t batch = 1;
  size_t runs = 0;
  double walltime_s = 0;      // first start to last end
  double total_compute_s = 0;  // sum of per-run latencies
  double qps = 0;              // runs / walltime
  double samples_per_s = 0;    // qps * batch
  // On the CPU an execute() is synchronous: enqueue, compute and end-to-end latency are one interval.
  TimingStats latency;
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
