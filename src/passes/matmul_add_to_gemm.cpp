// MatMul(A, W) + Add(·, bias) -> kiln.FusedGemm(A, W, bias) when W is a constant 2-D matrix and the
// bias is a constant broadcastable to [N] (how torch.nn.Linear exports with the new exporter, and
// with the legacy one for inputs of rank > 2).
#include "passes/pass.h"

namespace kiln {
namespace {

bool bias_fits(const Value& c, int64_t n) {
  if (!c.constant) return false;
  const Dims& s = c.shape;
  if (s.empty()) return true;
  for (size_t i = 0; i + 1 < s.size(); ++i) if (s[i] != 1) return false;
  return s.back() == n || s.back() == 1;
}

Status run(Graph& g, const PassContext&, bool* changed) {
  auto consumers = g.consumers();
  std::vector<char> dead(g.nodes.size(), 0);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& mm = g.nodes[i];
    if (dead[i] || !mm.domain.empty() || mm.op_type != "MatMul" || mm.inputs.size() != 2) continue;
    const Value& a = g.values[mm.inputs[0]];
    const Value& w = g.values[mm.inputs[1]];
    if (!w.constant || w.shape.size() != 2 || !a.rank_known || a.shape.size() < 2) continue;
    if (a.dtype != DataType::kFloat32 || w.dtype != DataType::kFloat32) continue;
    const int c = sole_consumer(g, consumers, mm.outputs[0]);
    if (c < 0) continue;
    Node& add = g.nodes[c];
    if (!add.domain.empty() || add.op_type != "Add" || add.inputs.size() != 2) continue;
    const int bias = add.inputs[0] == mm.outputs[0] ? add.inputs[1] : add.inputs[0];
    if (!bias_fits(g.values[bias], w.shape[1]) || g.values[bias].dtype != DataType::kFloat32) continue;
    int bias_id = bias;
    if (g.values[bias].shape.size() > 1) {
      // FusedGemm takes C as [N] (or [1]); drop the leading 1-dims of a [1,..,1,N] bias.
      Value flat;
      flat.name = g.values[bias].name + "/flat";
      Tensor t = *g.values[bias].constant;
      t.shape = {t.shape.back()};
      flat.set_constant(std::move(t));
      bias_id = g.add_value(std::move(flat));
    }
    Node fused;
    fused.name = mm.name;
    fused.op_type = "FusedGemm";
    fused.domain = "kiln";
    fused.opset = 1;
    fused.inputs = {mm.inputs[0], mm.inputs[1], bias_id};
    fused.outputs = add.outputs;
    fused.origins = mm.origins;
    fused.origins.insert(fused.origins.end(), add.origins.begin(), add.origins.end());
    // The fused node takes the Add's place so its output is still produced before its consumers.
    add = std::move(fused);
    dead[i] = 1;
    *changed = true;
  }
  if (*changed) erase_nodes(g, dead);
  return Status::ok();
}

const PassRegistrar kReg{{"matmul_add_to_gemm", "fuse MatMul with a constant 2-D weight and a bias Add into one GEMM", 30, run}};

}  // namespace
}  // namespace kiln
