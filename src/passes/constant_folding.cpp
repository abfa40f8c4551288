// Evaluates nodes whose inputs are all constants with the float64 reference and stores the result
// as a constant, removing the node.
#include <fmt/format.h>

#include "ops/op.h"
#include "ops/reference_eval.h"
#include "passes/pass.h"

namespace kiln {
namespace {

// Folding a huge tensor would bloat the engine (e.g. a broadcast of a scalar to a large shape).
constexpr int64_t kMaxFoldElements = 1 << 24;

Status run(Graph& g, const PassContext&, bool* changed) {
  std::vector<char> folded(g.nodes.size(), 0);
  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    Node& n = g.nodes[ni];
    bool all_const = !n.inputs.empty();
    for (int v : n.inputs) all_const &= v == kNoValue || g.is_constant(v);
    if (!all_const) continue;
    // A graph output must be written by a layer, so nodes producing one are left in place.
    bool skip = true;
    for (int v : n.outputs) skip &= g.is_constant(v);
    for (int v : n.outputs) skip |= g.is_graph_output(v);
    if (skip) continue;
    const OpDef* def = OpRegistry::instance().find(n.domain, n.op_type);
    if (!def || !def->reference) continue;
    std::vector<RefTensor> ins(n.inputs.size());
    RefContext ctx{n, {}, {}};
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (n.inputs[i] == kNoValue) {
        ctx.inputs.push_back(nullptr);
        continue;
      }
      ins[i] = ref_from_tensor(*g.values[n.inputs[i]].constant);
      ctx.inputs.push_back(&ins[i]);
    }
    ctx.outputs.resize(n.outputs.size());
    Status s = def->reference(ctx);
    if (!s.is_ok()) return std::move(s).with_context(n.describe());
    bool small = true;
    for (const auto& o : ctx.outputs) small &= o.elements() <= kMaxFoldElements;
    if (!small) continue;
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      const RefTensor& r = ctx.outputs[i];
      g.values[n.outputs[i]].set_constant(tensor_from_ref(r, r.dtype));
    }
    folded[ni] = 1;
    *changed = true;
  }
  if (*changed) erase_nodes(g, folded);
  return Status::ok();
}

const PassRegistrar kReg{{"constant_folding", "evaluate nodes whose inputs are all constants", 10, run}};

}  // namespace
}  // namespace kiln
