#include "perf_report.h"

#include <fmt/format.h>

namespace kiln::cli {

PerfSummary summarize(const std::vector<TimedRun>& runs, int64_t batch) {
  PerfSummary s;
  s.batch = batch;
  s.runs = runs.size();
  if (runs.empty()) return s;
  s.gpu = runs.front().gpu;
  std::vector<double> latency, enqueue, h2d, compute, d2h;
  for (const TimedRun& r : runs) {
    latency.push_back(r.gpu ? r.h2d_ms + r.compute_ms + r.d2h_ms : r.end_ms - r.start_ms);
    enqueue.push_back(r.gpu ? r.enqueue_ms : r.end_ms - r.start_ms);
    h2d.push_back(r.h2d_ms);
    compute.push_back(r.gpu ? r.compute_ms : r.end_ms - r.start_ms);
    d2h.push_back(r.d2h_ms);
  }
  s.latency = compute_stats(std::move(latency));
  s.enqueue = compute_stats(std::move(enqueue));
  s.h2d = compute_stats(std::move(h2d));
  s.compute = compute_stats(std::move(compute));
  s.d2h = compute_stats(std::move(d2h));
  s.walltime_s = (runs.back().end_ms - runs.front().start_ms) / 1000.0;
  s.total_compute_s = s.compute.total / 1000.0;
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
  out += fmt::format("[I] Enqueue Time: {}\n", format_stats_ms(s.enqueue));
  if (s.gpu) {
    out += fmt::format("[I] H2D Latency: {}\n", format_stats_ms(s.h2d));
    out += fmt::format("[I] GPU Compute Time: {}\n", format_stats_ms(s.compute));
    out += fmt::format("[I] D2H Latency: {}\n", format_stats_ms(s.d2h));
  } else {
    out += fmt::format("[I] Compute Time: {}\n", stats);
    out += "[I] Note: execute() is synchronous here (CPU engines; CUDA with --hostIO or --lowLatency), so enqueue time "
           "and compute time equal latency.\n";
  }
  out += fmt::format("[I] Total Host Walltime: {:.3f} s\n", s.walltime_s);
  out += fmt::format("[I] Total {}Compute Time: {:.3f} s\n", s.gpu ? "GPU " : "", s.total_compute_s);
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
    const double host = r.end_ms - r.start_ms;
    const double h2d = r.gpu ? r.h2d_ms : 0.0, compute = r.gpu ? r.compute_ms : host, d2h = r.gpu ? r.d2h_ms : 0.0;
    // GPU stage boundaries are placed on the host timeline from the run's start (events carry durations).
    const double enq = r.gpu ? r.enqueue_ms : host;
    out.push_back({{"startEnqMs", r.start_ms},
                   {"endEnqMs", r.start_ms + enq},
                   {"startH2dMs", r.start_ms},
                   {"endH2dMs", r.start_ms + h2d},
                   {"startComputeMs", r.start_ms + h2d},
                   {"endComputeMs", r.start_ms + h2d + compute},
                   {"startD2hMs", r.start_ms + h2d + compute},
                   {"endD2hMs", r.start_ms + h2d + compute + d2h},
                   {"h2dMs", h2d},
                   {"computeMs", compute},
                   {"d2hMs", d2h},
                   {"latencyMs", h2d + compute + d2h},
                   {"enqMs", enq}});
  }
  return out;
}

}  // namespace kiln::cli
