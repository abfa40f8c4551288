// Per-iteration timing for Google Benchmark runs that use manual time.
//
// Google Benchmark reports the mean of each repetition; the issue asks for medians and p99, so every
// iteration is timed on its own and the repetition's median, p99, mean and min are attached as counters
// (in microseconds). With --benchmark_repetitions=N the "median" aggregate of those counters is the median
// over repetitions, which is what bench/summarize.py reads.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <numeric>
#include <vector>

namespace kiln_bench {

class IterationStats {
 public:
  using Clock = std::chrono::steady_clock;

  explicit IterationStats(std::size_t expected = 4096) { seconds_.reserve(expected); }

  // Times one call of fn, feeds it to the benchmark as this iteration's manual time.
  template <typename Fn>
  void time(benchmark::State& state, Fn&& fn) {
    const auto t0 = Clock::now();
    fn();
    const auto t1 = Clock::now();
    const double s = std::chrono::duration<double>(t1 - t0).count();
    state.SetIterationTime(s);
    seconds_.push_back(s);
  }

  // Adds p50_us, p99_us, mean_us and min_us of this repetition to the benchmark's counters.
  void report(benchmark::State& state) {
    if (seconds_.empty()) return;
    std::vector<double> v = seconds_;
    std::sort(v.begin(), v.end());
    auto pct = [&](double p) {
      const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
      return v[std::min(i, v.size() - 1)] * 1e6;
    };
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()) * 1e6;
    state.counters["p50_us"] = pct(0.50);
    state.counters["p99_us"] = pct(0.99);
    state.counters["mean_us"] = mean;
    state.counters["min_us"] = v.front() * 1e6;
    state.counters["samples"] = static_cast<double>(v.size());
  }

 private:
  std::vector<double> seconds_;
};

}  // namespace kiln_bench
