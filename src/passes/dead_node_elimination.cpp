// Removes nodes none of whose outputs reach a graph output.
#include "passes/pass.h"

namespace kiln {
namespace {

Status run(Graph& g, const PassContext&, bool* changed) {
  std::vector<char> live_value(g.values.size(), 0);
  for (int v : g.outputs) live_value[v] = 1;
  std::vector<char> dead(g.nodes.size(), 1);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    bool live = false;
    for (int v : g.nodes[i].outputs) live |= v >= 0 && live_value[v];
    if (!live) continue;
    dead[i] = 0;
    for (int v : g.nodes[i].inputs) if (v >= 0) live_value[v] = 1;
  }
  for (char d : dead) *changed |= d != 0;
  if (*changed) erase_nodes(g, dead);
  return Status::ok();
}

const PassRegistrar kReg{{"dead_node_elimination", "remove nodes whose results are never used", 20, run}};

}  // namespace
}  // namespace kiln
