#include "backends/cpu/cpu_util.h"

#include <cctype>

#include <fmt/format.h>

namespace kiln::cpu {

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

std::string kernel_name(const std::string& stem, const std::string& op_type) {
  std::string s = stem + ".";
  for (char c : op_type) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace kiln::cpu
