#include "backends/kernel_checks.h"

#include <fmt/format.h>

namespace kiln {

Status require_dtypes(const Node& node, const Graph& graph, std::initializer_list<DataType> dtypes,
                      const std::string& kernel, bool all_inputs) {
  const size_t n = all_inputs ? node.inputs.size() : std::min<size_t>(1, node.inputs.size());
  for (size_t i = 0; i < n; ++i) {
    if (node.inputs[i] == kNoValue) continue;
    const DataType dt = graph.values[node.inputs[i]].dtype;
    bool ok = false;
    for (DataType d : dtypes) ok = ok || d == dt;
    if (!ok)
      return Status(StatusCode::kUnsupported, fmt::format("dtype {} of input {} is not supported by {}",
                                                          dtype_name(dt), i, kernel));
  }
  return Status::ok();
}

Status require_word_dtype(const Node& node, const Graph& graph, const std::string& kernel) {
  const DataType dt = graph.values[node.inputs[0]].dtype;
  const size_t elem = dtype_size(dt);
  if (elem == 1 || elem == 2 || elem == 4 || elem == 8) return Status::ok();
  return Status(StatusCode::kUnsupported, fmt::format("dtype {} is not supported by {}", dtype_name(dt), kernel));
}

Status require_max_rank(const Node& node, const Graph& graph, size_t max_rank, const std::string& kernel) {
  for (const auto* ids : {&node.inputs, &node.outputs})
    for (int id : *ids) {
      if (id == kNoValue) continue;
      const Value& v = graph.values[id];
      if (v.rank_known && v.shape.size() > max_rank)
        return Status(StatusCode::kUnsupported, fmt::format("value '{}' has rank {}, more than the {} dims {} supports",
                                                            v.name, v.shape.size(), max_rank, kernel));
    }
  return Status::ok();
}

}  // namespace kiln
