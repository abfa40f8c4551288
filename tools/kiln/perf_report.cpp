#include "perf_report.h"

#include <fmt/format.h>

namespace kiln::cli {

PerfSummary summarize(const std::vector<TimedRun>& runs, int64_t batch) {
  PerfSummary s;
  s.batch = batch;
  s.runs = runs.size();
  if (runs.empty()) return s;
  std::vector<double> latencies;
  latencies.reserve(runs.size());
  for (const TimedRun& r : runs) latencies.push_back(r.end_ms - r.start_ms);
  s.latency = compute_stats(std::move(latencies));
  s.walltime_s = (runs.back().end_ms - runs.front().start_ms) / 1000.0;
  s.total_compute_s = s.latency.total / 1000.0;
  s.qps = s.walltime_s > 0 ? static_cast<double>(s.runs) / s.walltime_s : 0.0;
  s.samples_per_s = s.qps * static_cast<double>(batch);
  return s;
}

std::string format_stats_ms(const TimingStats& s) {
  return fmt::format(
      "min = {:.4f} ms, max = {:.4f} ms, mean = {:.4f} ms, median = {:.4f} ms, percentile(90%) = {:.4f} ms, "
      "percentile(95%) = {:.4f} ms, percentile(99%) = {:.4f} ms",
      s.min, s.max, s.mean, s.median, s.p90, s.p95, s.p99);
}

std::string format_summary(const PerfSummary& s) {
  const std::string stats = format_stats_ms(s.latency);
  std::string out;
  out += "[I] === Performance summary ===\n";
  out += fmt::format("[I] Throughput: {:.2f} qps ({:.1f} samples/s at batch {})\n", s.qps, s.samples_per_s, s.batch);
  out += fmt::format("[I] Latency: {}\n", stats);
  out += fmt::format("[I] Enqueue Time: {}\n", stats);
  out += fmt::format("[I] Compute Time: {}\n", stats);
  out += "[I] Note: on the CPU execute() is synchronous, so enqueue time and compute time equal latency.\n";
  out += fmt::format("[I] Total Host Walltime: {:.3f} s\n", s.walltime_s);
  out += fmt::format("[I] Total Compute Time: {:.3f} s\n", s.total_compute_s);
  out += fmt::format("[I] Timed runs: {}\n", s.runs);
  if (s.latency.cv_percent > kUnstableCvPercent) {
    out += fmt::format("[W] * Latency is unstable, with coefficient of variance = {:.2f}%.\n", s.latency.cv_percent);
    out += "[W]   Fixing --threads, closing other busy processes or raising --duration may improve the stability.\n";
  }
  return out;
}

nlohmann::ordered_json times_to_json(const std::vector<TimedRun>& runs) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const TimedRun& r : runs) {
    const double ms = r.end_ms - r.start_ms;
    out.push_back({{"startEnqMs", r.start_ms},
                   {"endEnqMs", r.end_ms},
                   {"startH2dMs", r.start_ms},
                   {"endH2dMs", r.start_ms},
                   {"startComputeMs", r.start_ms},
                   {"endComputeMs", r.end_ms},
                   {"startD2hMs", r.end_ms},
                   {"endD2hMs", r.end_ms},
                   {"h2dMs", 0.0},
                   {"computeMs", ms},
                   {"d2hMs", 0.0},
                   {"latencyMs", ms},
                   {"enqMs", ms}});
  }
  return out;
}

}  // namespace kiln::cli
