#include "ops/fused_mlp.h"

#include <sstream>

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<FusedMlpAttrs> FusedMlpAttrs::parse(const Node& node) {
  FusedMlpAttrs a;
  auto acts = node.attrs.get_string("activations", "");
  if (!acts.is_ok()) return acts.status();
  auto layout = node.attrs.get_string("weight_layout", "nk");
  if (!layout.is_ok()) return layout.status();
  a.weight_layout = *layout;
  if (node.inputs.size() < 3 || (node.inputs.size() - 1) % 2 != 0)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("kiln.FusedMLP takes X and a (W, b) pair per layer, got {} inputs", node.inputs.size()));
  const size_t layers = (node.inputs.size() - 1) / 2;
  for (size_t i = 0; i < node.inputs.size(); ++i)  // every input is required (a corrupt engine may say otherwise)
    if (node.inputs[i] == kNoValue)
      return Status(StatusCode::kInvalidArgument, fmt::format("kiln.FusedMLP: input {} is missing", i));
  std::vector<std::string> names;
  std::stringstream ss(*acts);
  for (std::string item; std::getline(ss, item, ',');) names.push_back(item);
  if (!acts->empty() && acts->back() == ',') names.emplace_back();  // "Relu," = Relu, none
  if (acts->empty()) names.assign(layers, "");
  if (names.size() != layers)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("attribute 'activations' names {} activations for {} layers", names.size(), layers));
  for (const auto& nm : names) {
    auto act = activation_from_name(nm);
    if (!act.is_ok()) return act.status();
    a.activations.push_back(*act);
  }
  auto alphas = node.attrs.get_floats("activation_alphas", std::vector<float>(layers, 0.01f));
  if (!alphas.is_ok()) return alphas.status();
  if (alphas->size() != layers)
    return Status(StatusCode::kInvalidArgument, fmt::format("attribute 'activation_alphas' has {} values for {} layers",
                                                            alphas->size(), layers));
  a.activation_alphas = *alphas;
  return a;
}

void FusedMlpAttrs::store(Node& node) const {
  std::string acts;
  for (size_t i = 0; i < activations.size(); ++i) {
    if (i) acts += ',';
    acts += activation_name(activations[i]);
  }
  node.attrs.set("activations", acts);
  node.attrs.set("activation_alphas", activation_alphas);
  node.attrs.set("weight_layout", weight_layout);
}

namespace {

Status check_fused_mlp(const Node& node) {
  Status known = check_attributes(node, {"activations", "activation_alphas", "weight_layout"});
  if (!known.is_ok()) return known;
  auto at = FusedMlpAttrs::parse(node);
  return at.is_ok() ? Status::ok() : at.status();
}

// Per layer (K_i, N_i) from the weight shapes, checked against X and each other. A private layout keeps
// W_i's logical shape [N_i, K_i] (only the order of its elements is the backend's), so shapes infer as for
// "nk"; the reference computes from "nk" only (values_needed).
Result<std::vector<std::pair<int64_t, int64_t>>> layer_dims(const FusedMlpAttrs& at, const Dims& x,
                                                           const std::vector<Dims>& w, const std::vector<Dims>& b,
                                                           bool values_needed) {
  if (values_needed && at.weight_layout != "nk")
    return Status(StatusCode::kUnsupported,
                  fmt::format("weights in the backend-private layout '{}' (only the kernel that packed them reads it)",
                              at.weight_layout));
  if (x.size() < 2) return Status(StatusCode::kInvalidArgument, "X must have rank >= 2, got " + shape_str(x));
  std::vector<std::pair<int64_t, int64_t>> out;
  int64_t k = x.back();
  for (int i = 0; i < at.layers(); ++i) {
    if (w[i].size() != 2 || w[i][1] != k)
      return Status(StatusCode::kInvalidArgument, fmt::format("layer {}: W {} does not take {} inputs (want [N, {}])", i,
                                                              shape_str(w[i]), k, k));
    const int64_t n = w[i][0];
    if (volume(b[i]) != n || b[i].size() > 2 || (b[i].size() == 2 && b[i][0] != 1))
      return Status(StatusCode::kInvalidArgument, fmt::format("layer {}: bias {} is not [{}]", i, shape_str(b[i]), n));
    out.emplace_back(k, n);
    k = n;
  }
  return out;
}

Status infer_fused_mlp(InferContext& ctx) {
  auto at = FusedMlpAttrs::parse(ctx.node);
  if (!at.is_ok()) return at.status();
  std::vector<Dims> w, b;
  for (int i = 0; i < at->layers(); ++i) {
    const auto& wd = ctx.inputs[fused_mlp_weight_input(i)];
    const auto& bd = ctx.inputs[fused_mlp_bias_input(i)];
    const DataType wdt = ctx.inputs[fused_mlp_weight_input(0)].dtype;
    if (!is_float_dtype(wd.dtype) || wd.dtype != wdt || bd.dtype != wdt)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("layer {}: W is {}, b is {}: all weights and biases share one float dtype", i,
                                dtype_name(wd.dtype), dtype_name(bd.dtype)));
    w.push_back(wd.shape);
    b.push_back(bd.shape);
  }
  if (!is_float_dtype(ctx.inputs[0].dtype))
    return Status(StatusCode::kInvalidArgument, "X must be a float tensor, got " + std::string(dtype_name(ctx.inputs[0].dtype)));
  auto d = layer_dims(*at, ctx.inputs[0].shape, w, b, /*values_needed=*/false);
  if (!d.is_ok()) return d.status();
  Dims out = ctx.inputs[0].shape;
  out.back() = d->back().second;
  ctx.outputs[0] = {ctx.inputs[0].dtype, out};
  return Status::ok();
}

Status reference_fused_mlp(RefContext& ctx) {
  auto at = FusedMlpAttrs::parse(ctx.node);
  if (!at.is_ok()) return at.status();
  const RefTensor& X = *ctx.inputs[0];
  std::vector<Dims> w, b;
  for (int i = 0; i < at->layers(); ++i) {
    w.push_back(ctx.inputs[fused_mlp_weight_input(i)]->shape);
    b.push_back(ctx.inputs[fused_mlp_bias_input(i)]->shape);
  }
  auto d = layer_dims(*at, X.shape, w, b, /*values_needed=*/true);
  if (!d.is_ok()) return d.status();
  const int64_t M = volume(X.shape) / X.shape.back();
  std::vector<double> h = X.data, next;
  for (int i = 0; i < at->layers(); ++i) {
    const auto [K, N] = (*d)[i];
    const auto& W = ctx.inputs[fused_mlp_weight_input(i)]->data;
    const auto& B = ctx.inputs[fused_mlp_bias_input(i)]->data;
    next.assign(static_cast<size_t>(M * N), 0.0);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = B[n];
        for (int64_t k = 0; k < K; ++k) acc += h[m * K + k] * W[n * K + k];
        next[m * N + n] = apply_activation(at->activations[i], acc, at->activation_alphas[i]);
      }
    h.swap(next);
  }
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = X.dtype;
  Y.shape = X.shape;
  Y.shape.back() = d->back().second;
  Y.data = std::move(h);
  return Status::ok();
}

OpDef fused_mlp_def() {
  OpDef def;
  def.domain = "kiln";
  def.op_type = "FusedMLP";
  def.check = check_fused_mlp;
  def.infer = infer_fused_mlp;
  def.reference = reference_fused_mlp;
  return def;
}

const OpRegistrar kFusedMlp{fused_mlp_def()};

}  // namespace
}  // namespace kiln
