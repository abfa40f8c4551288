// A chain of >= 2 dense layers (Gemm / kiln.FusedGemm with constant weights, a row-vector bias and any fused
// activation), each intermediate read only by the next layer, -> one kiln.FusedMLP (ops/fused_mlp.h): one
// kernel call that reads each weight once and never writes the intermediate activations to memory.
// alpha and transB are folded into W stored [N,K] ("nk"), beta*C into b (zeros when C is absent).
//
// Gated so that it never produces a node nobody can run or that a later step cannot handle:
//   - only when the target backend registers a kiln.FusedMLP kernel (PassContext::device);
//   - never in INT8 builds: the INT8 step after the passes plans and rewrites the Gemm nodes themselves.
#include <fmt/format.h>

#include "builder/kernel_assignment.h"
#include "ops/fused_mlp.h"
#include "ops/gemm.h"
#include "passes/pass.h"

namespace kiln {
namespace {

// Total FP32 weight bytes one fused node may hold. What the fusion saves is per-layer overhead (a call and
// an intermediate round trip per layer, ~1-2 us on the CPU, a launch on the GPU) and what it costs is the
// freedom to run each layer as its own well-parallelized GEMM. Past a few MiB of weights, a small-batch pass
// is bound by streaming them from L3/DRAM (well over 100 us) and that overhead is noise, so the fused node
// would only give up per-layer tuning. 8 MiB keeps every MLP that fits comfortably in an L2/L3 slice.
constexpr int64_t kMaxFusedWeightBytes = int64_t{8} << 20;

struct Dense {
  int64_t k = 0, n = 0;
  std::vector<float> w;  // [N,K], alpha folded in
  std::vector<float> b;  // [N], beta*C (zeros when C is absent)
  Activation act = Activation::kNone;
  float act_alpha = 0.01f;
};

bool is_f32(const Graph& g, int v) { return g.values[v].dtype == DataType::kFloat32; }

// The node as a dense layer, or false when it is not one this rule can fold.
bool as_dense(const Graph& g, const Node& n, Dense* d) {
  const bool gemm = n.domain.empty() && n.op_type == "Gemm";
  const bool fused = n.domain == "kiln" && n.op_type == "FusedGemm";
  if (!(gemm || fused) || n.inputs.size() < 2 || n.outputs.size() != 1) return false;
  auto at = GemmAttrs::parse(n);
  if (!at.is_ok() || at->trans_a) return false;
  const Value& x = g.values[n.inputs[0]];
  const Value& b = g.values[n.inputs[1]];
  if (!x.rank_known || x.shape.size() < 2 || !is_f32(g, n.inputs[0]) || !is_f32(g, n.outputs[0])) return false;
  if (!b.constant || b.shape.size() != 2 || !is_f32(g, n.inputs[1])) return false;
  d->k = at->trans_b ? b.shape[1] : b.shape[0];
  d->n = at->trans_b ? b.shape[0] : b.shape[1];
  const int c = n.inputs.size() > 2 ? n.inputs[2] : kNoValue;
  const Tensor* ct = nullptr;
  if (c != kNoValue) {
    const Value& cv = g.values[c];
    if (!cv.constant || !is_f32(g, c) || cv.shape.size() > 2) return false;
    const int64_t rows = cv.shape.size() == 2 ? cv.shape[0] : 1;
    const int64_t cols = cv.shape.empty() ? 1 : cv.shape.back();
    if (rows != 1 || (cols != 1 && cols != d->n)) return false;  // only a bias shared by every row
    ct = &*cv.constant;
  }
  const float* src = b.constant->data<float>();
  d->w.resize(static_cast<size_t>(d->n * d->k));
  for (int64_t j = 0; j < d->n; ++j)
    for (int64_t k = 0; k < d->k; ++k)
      d->w[j * d->k + k] = at->alpha * (at->trans_b ? src[j * d->k + k] : src[k * d->n + j]);
  d->b.assign(static_cast<size_t>(d->n), 0.f);
  if (ct)
    for (int64_t j = 0; j < d->n; ++j) d->b[j] = at->beta * ct->data<float>()[ct->elements() == 1 ? 0 : j];
  d->act = at->activation;
  d->act_alpha = at->activation_alpha;
  return true;
}

int add_constant(Graph& g, const std::string& name, Dims shape, const std::vector<float>& v) {
  Value val;
  val.name = name;
  val.set_constant(Tensor::from_vector(DataType::kFloat32, std::move(shape), v));
  return g.add_value(std::move(val));
}

Status run(Graph& g, const PassContext& ctx, bool* changed) {
  if (ctx.int8 || !backend_has_kernel(ctx.device, "kiln", "FusedMLP")) return Status::ok();
  auto consumers = g.consumers();
  std::vector<char> dead(g.nodes.size(), 0);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (dead[i]) continue;
    // Nodes are in topological order, so the first layer of a chain is met before the rest of it.
    std::vector<int> chain;
    std::vector<Dense> layers;
    int64_t bytes = 0;
    for (int cur = static_cast<int>(i); cur >= 0;) {
      Dense d;
      if (!as_dense(g, g.nodes[cur], &d)) break;
      if (!chain.empty() && g.nodes[cur].inputs[0] != g.nodes[chain.back()].outputs[0]) break;
      bytes += static_cast<int64_t>(d.w.size() + d.b.size()) * 4;
      if (bytes > kMaxFusedWeightBytes) break;
      chain.push_back(cur);
      layers.push_back(std::move(d));
      cur = sole_consumer(g, consumers, g.nodes[cur].outputs[0]);
    }
    if (chain.size() < 2) continue;
    const Node& first = g.nodes[chain.front()];
    Node& last = g.nodes[chain.back()];
    Node mlp;
    mlp.name = fmt::format("{}..{}", first.name, last.name);
    mlp.op_type = "FusedMLP";
    mlp.domain = "kiln";
    mlp.opset = 1;
    mlp.inputs = {first.inputs[0]};
    mlp.outputs = last.outputs;
    FusedMlpAttrs at;
    for (size_t l = 0; l < chain.size(); ++l) {
      const Node& src = g.nodes[chain[l]];
      mlp.origins.insert(mlp.origins.end(), src.origins.begin(), src.origins.end());
      const Dense& d = layers[l];
      mlp.inputs.push_back(add_constant(g, src.name + "/mlp_W", {d.n, d.k}, d.w));
      mlp.inputs.push_back(add_constant(g, src.name + "/mlp_b", {d.n}, d.b));
      at.activations.push_back(d.act);
      at.activation_alphas.push_back(d.act_alpha);
    }
    at.store(mlp);
    // The fused node takes the last layer's place, after everything the chain reads.
    last = std::move(mlp);
    for (size_t l = 0; l + 1 < chain.size(); ++l) dead[chain[l]] = 1;
    *changed = true;
  }
  if (*changed) erase_nodes(g, dead);
  return Status::ok();
}

const PassRegistrar kReg{{"mlp_fusion",
                          "fuse a chain of >= 2 dense layers (constant weights) into one kiln.FusedMLP when the "
                          "target backend has a kernel for it (not in INT8 builds)",
                          50, run}};

}  // namespace
}  // namespace kiln
