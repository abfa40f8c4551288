#include "ir/graph.h"

#include <fmt/format.h>

namespace kiln {

std::string Node::describe() const {
  std::string op = domain.empty() ? op_type : domain + "." + op_type;
  return fmt::format("node '{}' ({}, opset {})", name, op, opset);
}

int Graph::add_value(Value v) {
  values.push_back(std::move(v));
  return static_cast<int>(values.size()) - 1;
}

int Graph::find_value(const std::string& name) const {
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i].name == name) return static_cast<int>(i);
  return kNoValue;
}

bool Graph::is_graph_output(int v) const {
  for (int o : outputs) if (o == v) return true;
  return false;
}
bool Graph::is_graph_input(int v) const {
  for (int i : inputs) if (i == v) return true;
  return false;
}

std::vector<std::vector<int>> Graph::consumers() const {
  std::vector<std::vector<int>> c(values.size());
  for (size_t n = 0; n < nodes.size(); ++n)
    for (int v : nodes[n].inputs)
      if (v >= 0) c[v].push_back(static_cast<int>(n));
  return c;
}

std::vector<int> Graph::producers() const {
  std::vector<int> p(values.size(), -1);
  for (size_t n = 0; n < nodes.size(); ++n)
    for (int v : nodes[n].outputs)
      if (v >= 0) p[v] = static_cast<int>(n);
  return p;
}

void Graph::compact() {
  std::vector<char> used(values.size(), 0);
  for (int v : inputs) used[v] = 1;
  for (int v : outputs) used[v] = 1;
  for (const auto& n : nodes) {
    for (int v : n.inputs) if (v >= 0) used[v] = 1;
    for (int v : n.outputs) if (v >= 0) used[v] = 1;
  }
  std::vector<int> remap(values.size(), kNoValue);
  std::vector<Value> kept;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!used[i]) continue;
    remap[i] = static_cast<int>(kept.size());
    kept.push_back(std::move(values[i]));
  }
  values = std::move(kept);
  auto fix = [&](std::vector<int>& ids) {
    for (int& v : ids) if (v >= 0) v = remap[v];
  };
  fix(inputs);
  fix(outputs);
  for (auto& n : nodes) {
    fix(n.inputs);
    fix(n.outputs);
  }
}

Status Graph::verify() const {
  const int nv = static_cast<int>(values.size());
  std::vector<char> available(values.size(), 0);
  for (int v : inputs) {
    if (v < 0 || v >= nv) return Status(StatusCode::kInternal, "graph input id out of range");
    available[v] = 1;
  }
  for (int v = 0; v < nv; ++v) if (values[v].constant) available[v] = 1;
  for (const auto& n : nodes) {
    for (int v : n.inputs) {
      if (v == kNoValue) continue;
      if (v < 0 || v >= nv) return Status(StatusCode::kInternal, "value id out of range").with_context(n.describe());
      if (!available[v])
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("input '{}' is not produced by an earlier node (graph not topologically "
                                  "sorted, or a dangling input)", values[v].name))
            .with_context(n.describe());
    }
    for (int v : n.outputs) {
      if (v < 0 || v >= nv) return Status(StatusCode::kInternal, "value id out of range").with_context(n.describe());
      if (available[v])
        return Status(StatusCode::kInvalidArgument, fmt::format("value '{}' is produced twice", values[v].name))
            .with_context(n.describe());
      available[v] = 1;
    }
  }
  for (int v : outputs) {
    if (v < 0 || v >= nv) return Status(StatusCode::kInternal, "graph output id out of range");
    if (!available[v])
      return Status(StatusCode::kInvalidArgument, fmt::format("graph output '{}' is never produced", values[v].name));
  }
  return Status::ok();
}

}  // namespace kiln
