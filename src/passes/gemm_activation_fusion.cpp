// Gemm/FusedGemm followed by Relu, LeakyRelu, Sigmoid or Tanh -> one FusedGemm with the activation in
// its epilogue (one kernel call, the pre-activation tensor never written).
#include "ops/gemm.h"
#include "passes/pass.h"

namespace kiln {
namespace {

Status run(Graph& g, const PassContext&, bool* changed) {
  auto consumers = g.consumers();
  std::vector<char> dead(g.nodes.size(), 0);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& gemm = g.nodes[i];
    const bool onnx_gemm = gemm.domain.empty() && gemm.op_type == "Gemm";
    const bool fused_gemm = gemm.domain == "kiln" && gemm.op_type == "FusedGemm";
    if (dead[i] || !(onnx_gemm || fused_gemm)) continue;
    if (gemm.attrs.has("activation") && !gemm.attrs.get_string("activation", "").value().empty()) continue;
    const int c = sole_consumer(g, consumers, gemm.outputs[0]);
    if (c < 0) continue;
    Node& act = g.nodes[c];
    if (!act.domain.empty()) continue;
    auto kind = activation_from_name(act.op_type);
    if (!kind.is_ok() || *kind == Activation::kNone) continue;
    Node fused = gemm;
    fused.op_type = "FusedGemm";
    fused.domain = "kiln";
    fused.opset = 1;
    fused.attrs.set("activation", act.op_type);
    if (*kind == Activation::kLeakyRelu) {
      auto alpha = act.attrs.get_float("alpha", 0.01f);
      if (!alpha.is_ok()) return alpha.status();
      fused.attrs.set("activation_alpha", *alpha);
    }
    fused.outputs = act.outputs;
    fused.origins.insert(fused.origins.end(), act.origins.begin(), act.origins.end());
    act = std::move(fused);
    dead[i] = 1;
    *changed = true;
  }
  if (*changed) erase_nodes(g, dead);
  return Status::ok();
}

const PassRegistrar kReg{{"gemm_activation_fusion", "fuse Relu/LeakyRelu/Sigmoid/Tanh into the preceding GEMM", 40, run}};

}  // namespace
}  // namespace kiln
