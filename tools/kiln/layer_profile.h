// Per-layer times gathered over many profiled execute() calls, for --dumpProfile (a table) and
// --exportProfile (trtexec's JSON layout).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/runtime.h"

namespace kiln::cli {

class LayerProfile {
 public:
  struct Row {
    std::string name;
    double total_ms = 0, average_ms = 0, median_ms = 0, percent = 0;
  };

  // One execute()'s timings (ExecutionContext::last_layer_timings()).
  void add_run(const std::vector<LayerTiming>& timings);
  int runs() const { return runs_; }
  // In layer order of the first run; percent of the sum over all layers.
  std::vector<Row> rows() const;

  // trtexec's table: "Time(ms) Avg.(ms) Median(ms) Time(%) Layer" plus a Total row; lines start with [I].
  std::string format_table() const;
  // [{"count": N}, {"name": ..., "timeMs": ..., "averageMs": ..., "medianMs": ..., "percentage": ...}, ...]
  nlohmann::ordered_json to_json() const;

 private:
  int runs_ = 0;
  std::vector<std::string> order_;
  std::map<std::string, std::vector<double>> samples_;
};

}  // namespace kiln::cli
