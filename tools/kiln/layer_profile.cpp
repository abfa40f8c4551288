#include "layer_profile.h"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "timing_stats.h"

namespace kiln::cli {

void LayerProfile::add_run(const std::vector<LayerTiming>& timings) {
  ++runs_;
  for (const LayerTiming& t : timings) {
    auto [it, inserted] = samples_.try_emplace(t.name);
    if (inserted) order_.push_back(t.name);
    it->second.push_back(t.ms);
  }
}

std::vector<LayerProfile::Row> LayerProfile::rows() const {
  std::vector<Row> rows;
  double grand_total = 0;
  for (const std::string& name : order_) {
    std::vector<double> s = samples_.at(name);
    std::sort(s.begin(), s.end());
    Row r;
    r.name = name;
    r.total_ms = std::accumulate(s.begin(), s.end(), 0.0);
    // Averages are per profiled run (as trtexec), so a layer that ran every time averages its own time.
    r.average_ms = runs_ > 0 ? r.total_ms / runs_ : 0.0;
    r.median_ms = median_of_sorted(s);
    grand_total += r.total_ms;
    rows.push_back(std::move(r));
  }
  for (Row& r : rows) r.percent = grand_total > 0 ? r.total_ms / grand_total * 100.0 : 0.0;
  return rows;
}

std::string LayerProfile::format_table() const {
  const std::vector<Row> rs = rows();
  std::string out = fmt::format("[I] === Profile ({} iterations) ===\n", runs_);
  out += fmt::format("[I] {:>12} {:>12} {:>12} {:>8}   {}\n", "Time(ms)", "Avg.(ms)", "Median(ms)", "Time(%)", "Layer");
  double total = 0, avg = 0, median = 0;
  for (const Row& r : rs) {
    out += fmt::format("[I] {:>12.4f} {:>12.4f} {:>12.4f} {:>8.1f}   {}\n", r.total_ms, r.average_ms, r.median_ms,
                       r.percent, r.name);
    total += r.total_ms;
    avg += r.average_ms;
    median += r.median_ms;
  }
  out += fmt::format("[I] {:>12.4f} {:>12.4f} {:>12.4f} {:>8.1f}   {}\n", total, avg, median, rs.empty() ? 0.0 : 100.0,
                     "Total");
  return out;
}

nlohmann::ordered_json LayerProfile::to_json() const {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  out.push_back({{"count", runs_}});
  for (const Row& r : rows()) {
    out.push_back({{"name", r.name},
                   {"timeMs", r.total_ms},
                   {"averageMs", r.average_ms},
                   {"medianMs", r.median_ms},
                   {"percentage", r.percent}});
  }
  return out;
}

}  // namespace kiln::cli
