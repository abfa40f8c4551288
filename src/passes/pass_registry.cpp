#include <algorithm>

#include "passes/pass.h"

namespace kiln {

PassRegistry& PassRegistry::instance() {
  static PassRegistry r;
  return r;
}

void PassRegistry::add(PassDef def) { defs_.push_back(std::move(def)); }

std::vector<const PassDef*> PassRegistry::ordered() const {
  std::vector<const PassDef*> out;
  for (const auto& d : defs_) out.push_back(&d);
  std::stable_sort(out.begin(), out.end(), [](auto* a, auto* b) {
    return a->order != b->order ? a->order < b->order : a->name < b->name;
  });
  return out;
}

Status run_passes(Graph& g, const PassContext& ctx, std::vector<std::string>* ran) {
  // A fusion can expose another (e.g. folding then MatMul+Add), so iterate to a fixed point.
  for (int round = 0; round < 8; ++round) {
    bool any = false;
    for (const PassDef* p : PassRegistry::instance().ordered()) {
      if (ctx.disabled.count(p->name)) continue;
      bool changed = false;
      Status s = p->run(g, ctx, &changed);
      if (!s.is_ok()) return std::move(s).with_context("pass '" + p->name + "'");
      if (round == 0 && ran) ran->push_back(p->name);
      any |= changed;
    }
    Status s = g.verify();
    if (!s.is_ok()) return std::move(s).with_context("after optimization passes");
    if (!any) break;
  }
  return Status::ok();
}

Status run_pass(Graph& g, const std::string& name, const PassContext& ctx) {
  if (ctx.disabled.count(name)) return Status::ok();
  for (const PassDef* p : PassRegistry::instance().ordered()) {
    if (p->name != name) continue;
    bool changed = false;
    Status s = p->run(g, ctx, &changed);
    if (!s.is_ok()) return std::move(s).with_context("pass '" + p->name + "'");
  }
  return Status::ok();
}

int sole_consumer(const Graph& g, const std::vector<std::vector<int>>& consumers, int v) {
  if (v < 0 || g.is_graph_output(v) || consumers[v].size() != 1) return -1;
  return consumers[v][0];
}

void erase_nodes(Graph& g, const std::vector<char>& dead) {
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!dead[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  g.compact();
}

}  // namespace kiln
