// Performance summary, exported timings and per-layer profiles: the numbers and the trtexec layouts.
#include <gtest/gtest.h>

#include "layer_profile.h"
#include "perf_report.h"
#include "progress.h"

namespace kiln::cli {
namespace {

TEST(PerfReport, SummarizeWalltimeAndThroughput) {
  // Four runs of 1 ms spread over 8 ms of wall time.
  std::vector<TimedRun> runs = {{0, 1}, {2, 3}, {4, 5}, {7, 8}};
  PerfSummary s = summarize(runs, 256);
  EXPECT_EQ(s.runs, 4u);
  EXPECT_DOUBLE_EQ(s.walltime_s, 0.008);
  EXPECT_DOUBLE_EQ(s.total_compute_s, 0.004);
  EXPECT_DOUBLE_EQ(s.qps, 500);
  EXPECT_DOUBLE_EQ(s.samples_per_s, 128000);
  EXPECT_DOUBLE_EQ(s.latency.mean, 1);
}

TEST(PerfReport, SummaryBlockHasTrtexecLines) {
  PerfSummary s = summarize({{0, 1}, {1, 2}}, 8);
  const std::string text = format_summary(s);
  EXPECT_NE(text.find("[I] === Performance summary ==="), std::string::npos);
  EXPECT_NE(text.find("[I] Throughput: 1000.00 qps (8000.0 samples/s at batch 8)"), std::string::npos);
  EXPECT_NE(text.find("[I] Latency: min = 1.0000 ms, max = 1.0000 ms, mean = 1.0000 ms, median = 1.0000 ms, "
                      "percentile(90%) = 1.0000 ms, percentile(95%) = 1.0000 ms, percentile(99%) = 1.0000 ms"),
            std::string::npos);
  EXPECT_NE(text.find("[I] Enqueue Time: "), std::string::npos);
  EXPECT_NE(text.find("[I] Compute Time: "), std::string::npos);
  EXPECT_NE(text.find("[I] Total Host Walltime: 0.002 s"), std::string::npos);
  EXPECT_NE(text.find("[I] Total Compute Time: 0.002 s"), std::string::npos);
  EXPECT_EQ(text.find("[W]"), std::string::npos);  // CV is 0
}

TEST(PerfReport, UnstableLatencyWarns) {
  PerfSummary s = summarize({{0, 1}, {1, 4}}, 1);  // latencies 1 and 3: CV 50%
  const std::string text = format_summary(s);
  EXPECT_NE(text.find("[W] * Latency is unstable, with coefficient of variance = 50.00%."), std::string::npos);
}

TEST(PerfReport, ExportTimesKeys) {
  nlohmann::json j = times_to_json({{0.5, 1.5}});
  ASSERT_EQ(j.size(), 1u);
  for (const char* key : {"startEnqMs", "endEnqMs", "startComputeMs", "endComputeMs", "startH2dMs", "endH2dMs",
                          "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs", "enqMs"}) {
    EXPECT_TRUE(j[0].contains(key)) << key;
  }
  EXPECT_DOUBLE_EQ(j[0]["latencyMs"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j[0]["h2dMs"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j[0]["startComputeMs"].get<double>(), 0.5);
}

TEST(LayerProfile, AggregatesAcrossRuns) {
  LayerProfile p;
  p.add_run({{"fc1", 1.0}, {"fc2", 3.0}});
  p.add_run({{"fc1", 2.0}, {"fc2", 3.0}});
  p.add_run({{"fc1", 6.0}, {"fc2", 3.0}});
  auto rows = p.rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].name, "fc1");  // first-run order, not alphabetical or by time
  EXPECT_DOUBLE_EQ(rows[0].total_ms, 9);
  EXPECT_DOUBLE_EQ(rows[0].average_ms, 3);
  EXPECT_DOUBLE_EQ(rows[0].median_ms, 2);
  EXPECT_DOUBLE_EQ(rows[0].percent, 50);
  EXPECT_DOUBLE_EQ(rows[1].percent, 50);

  nlohmann::json j = p.to_json();
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0]["count"].get<int>(), 3);
  EXPECT_EQ(j[1]["name"].get<std::string>(), "fc1");
  EXPECT_DOUBLE_EQ(j[1]["timeMs"].get<double>(), 9);
  EXPECT_DOUBLE_EQ(j[1]["averageMs"].get<double>(), 3);
  EXPECT_DOUBLE_EQ(j[1]["medianMs"].get<double>(), 2);
  EXPECT_DOUBLE_EQ(j[1]["percentage"].get<double>(), 50);

  const std::string table = p.format_table();
  EXPECT_NE(table.find("=== Profile (3 iterations) ==="), std::string::npos);
  EXPECT_NE(table.find("Total"), std::string::npos);
  EXPECT_NE(table.find("fc2"), std::string::npos);
}

TEST(LayerProfile, EmptyIsValid) {
  LayerProfile p;
  EXPECT_EQ(p.to_json().size(), 1u);
  EXPECT_NE(p.format_table().find("Total"), std::string::npos);
}

TEST(Progress, Render) {
  EXPECT_EQ(ProgressBar::render("Eval", 0.5, "5/10", 10), "Eval [#####.....]  50% 5/10");
  EXPECT_EQ(ProgressBar::render("Eval", 2.0, "", 4), "Eval [####] 100%");
  EXPECT_EQ(ProgressBar::render("Eval", -1.0, "", 4), "Eval [....]   0%");
}

TEST(Progress, DisabledDrawsNothing) {
  testing::internal::CaptureStderr();
  {
    ProgressBar bar("x", false);
    bar.update(0.5);
    bar.finish();
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace kiln::cli
