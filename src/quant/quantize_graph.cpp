#include "quant/quantize_graph.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "ops/gemm.h"
#include "ops/op.h"
#include "ops/quantize.h"

namespace kiln::quant {
namespace {

bool is_float_gemm(const Node& n) {
  return (n.domain.empty() && n.op_type == "Gemm") || (n.domain == "kiln" && n.op_type == "FusedGemm");
}

bool name_matches(const Node& n, const std::string& pattern) {
  return pattern == "*" || n.name == pattern || std::find(n.origins.begin(), n.origins.end(), pattern) != n.origins.end();
}

// Values that are graph outputs, directly or through views of them.
std::set<int> values_reaching_outputs(const Graph& g) {
  std::set<int> out(g.outputs.begin(), g.outputs.end());
  for (auto it = g.nodes.rbegin(); it != g.nodes.rend(); ++it)
    if (is_view_node(*it) && out.count(it->outputs[0])) out.insert(it->inputs[0]);
  return out;
}

// The bias as [N] floats (beta * C broadcast), or empty when C is absent.
std::vector<float> bias_vector(const Graph& g, const Node& n, const GemmAttrs& at, int64_t N) {
  if (n.inputs.size() < 3 || n.inputs[2] == kNoValue) return {};
  const Tensor& c = *g.values[n.inputs[2]].constant;
  std::vector<float> b(static_cast<size_t>(N));
  const bool scalar = c.elements() == 1;
  for (int64_t j = 0; j < N; ++j) b[j] = at.beta * c.data<float>()[scalar ? 0 : j];
  return b;
}

}  // namespace

bool is_view_node(const Node& n) {
  const OpDef* def = OpRegistry::instance().find(n.domain, n.op_type);
  return def && def->is_view && !n.inputs.empty() && !n.outputs.empty();
}

Status int8_candidate(const Graph& g, const Node& n) {
  if (!is_float_gemm(n)) return Status(StatusCode::kUnsupported, "not a GEMM");
  auto at = GemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  if (at->trans_a) return Status(StatusCode::kUnsupported, "transposed A");
  if (g.values[n.inputs[0]].dtype != DataType::kFloat32) return Status(StatusCode::kUnsupported, "A is not float32");
  const int b = n.inputs[1];
  if (!g.is_constant(b) || g.values[b].dtype != DataType::kFloat32 || g.values[b].shape.size() != 2)
    return Status(StatusCode::kUnsupported, "weights are not a constant float32 matrix");
  const int64_t N = at->trans_b ? g.values[b].shape[0] : g.values[b].shape[1];
  if (n.inputs.size() > 2 && n.inputs[2] != kNoValue) {
    const int c = n.inputs[2];
    if (!g.is_constant(c) || g.values[c].dtype != DataType::kFloat32)
      return Status(StatusCode::kUnsupported, "bias is not a constant float32");
    const Dims& cs = g.values[c].shape;
    const int64_t e = volume(cs);
    if (!(e == 1 || (e == N && cs.back() == N)))
      return Status(StatusCode::kUnsupported, fmt::format("bias {} is not per output column", dims_to_string(cs)));
  }
  return Status::ok();
}

Result<Int8Plan> plan_int8(const Graph& g, const std::vector<std::pair<std::string, std::string>>& layer_precisions) {
  for (const auto& entry : layer_precisions) {
    const std::string& name = entry.first;  // a named reference: clang 14 cannot capture structured bindings
    const std::string& prec = entry.second;
    if (prec != "fp32" && prec != "fp16" && prec != "int8")
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("layer precision '{}' for '{}' is not one of fp32, fp16, int8", prec, name));
    if (name == "*") continue;
    if (std::none_of(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return name_matches(n, name); })) {
      std::string names;
      for (const Node& n : g.nodes)
        if (is_float_gemm(n)) names += (names.empty() ? "" : ", ") + n.name;
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("--layerPrecisions names '{}', but no layer or ONNX node has that name (GEMM layers: {})",
                                name, names));
    }
  }
  const std::set<int> reaching = values_reaching_outputs(g);
  Int8Plan plan;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (!is_float_gemm(n)) continue;
    std::string want;
    for (const auto& [name, prec] : layer_precisions)
      if (name_matches(n, name)) want = prec;
    Status ok = int8_candidate(g, n);
    if (!ok.is_ok()) {
      if (want == "int8")
        return Status(StatusCode::kUnsupported, fmt::format("layer '{}' cannot run in INT8: {}", n.name, ok.message()));
      plan.kept_float.push_back(fmt::format("{}: {}", n.name, ok.message()));
      continue;
    }
    if (want == "fp32" || want == "fp16") {
      plan.kept_float.push_back(fmt::format("{}: --layerPrecisions {}", n.name, want));
      continue;
    }
    if (want.empty() && reaching.count(n.outputs[0])) {
      plan.kept_float.push_back(fmt::format("{}: writes a network output (override with --layerPrecisions={}:int8)",
                                            n.name, n.name));
      continue;
    }
    plan.layers.push_back(static_cast<int>(i));
    const int a = n.inputs[0];
    if (std::find(plan.scaled_values.begin(), plan.scaled_values.end(), a) == plan.scaled_values.end())
      plan.scaled_values.push_back(a);
  }
  return plan;
}

Status apply_int8(Graph& g, const Int8Plan& plan, const std::map<std::string, float>& scales) {
  std::string missing;
  for (int v : plan.scaled_values)
    if (!scales.count(g.values[v].name)) missing += (missing.empty() ? "'" : ", '") + g.values[v].name + "'";
  if (!missing.empty())
    return Status(StatusCode::kNotFound,
                  fmt::format("no INT8 scale for tensor(s) {} (a calibration cache for another model or build? "
                              "delete it to calibrate again)", missing));
  for (int v : plan.scaled_values) {
    const float s = scales.at(g.values[v].name);
    if (!(s > 0) || !std::isfinite(s))
      return Status(StatusCode::kInvalidArgument, fmt::format("scale {} of tensor '{}' is not positive", s, g.values[v].name));
  }
  const std::set<int> int8_layers(plan.layers.begin(), plan.layers.end());
  const auto consumers = g.consumers();
  const auto producers = g.producers();
  // A layer output stays INT8 when every reader is an INT8 layer taking it as A (and it is no graph output).
  auto chained = [&](int v) {
    if (g.is_graph_output(v) || consumers[v].empty() || producers[v] < 0 || !int8_layers.count(producers[v]))
      return false;
    for (int c : consumers[v])
      if (!int8_layers.count(c) || g.nodes[c].inputs[0] != v ||
          std::count(g.nodes[c].inputs.begin(), g.nodes[c].inputs.end(), v) != 1)
        return false;
    return true;
  };
  std::map<int, int> quantized;  // float value -> its QuantizeLinear output
  std::vector<Node> out_nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node n = g.nodes[i];
    if (!int8_layers.count(static_cast<int>(i))) {
      out_nodes.push_back(std::move(n));
      continue;
    }
    const int a = n.inputs[0];
    const float a_scale = scales.at(g.values[a].name);
    int a_q = a;
    if (!chained(a)) {
      auto it = quantized.find(a);
      if (it == quantized.end()) {
        Value qv = g.values[a];
        qv.name += "::int8";
        qv.dtype = DataType::kInt8;
        qv.constant.reset();
        Value sv, zv;
        sv.name = g.values[a].name + "::scale";
        sv.set_constant(Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{a_scale}));
        zv.name = g.values[a].name + "::zero_point";
        zv.set_constant(Tensor::from_vector(DataType::kInt8, {}, std::vector<int8_t>{0}));
        Node q;
        q.name = g.values[a].name + " quantize";
        q.op_type = "QuantizeLinear";
        q.opset = 19;
        q.inputs = {a, g.add_value(std::move(sv)), g.add_value(std::move(zv))};
        q.outputs = {g.add_value(std::move(qv))};
        q.precision = "int8";
        it = quantized.emplace(a, q.outputs[0]).first;
        out_nodes.push_back(std::move(q));
      }
      a_q = it->second;
    }
    auto at = GemmAttrs::parse(n);
    if (!at.is_ok()) return std::move(at).take_status().with_context(n.describe());
    const Tensor& b = *g.values[n.inputs[1]].constant;
    const int64_t K = at->trans_b ? b.shape[1] : b.shape[0];
    const int64_t N = at->trans_b ? b.shape[0] : b.shape[1];
    // Per-output-channel symmetric weights: scale_n = max_k |alpha * W[k,n]| / 127.
    std::vector<float> w_scale(static_cast<size_t>(N), 0.f);
    auto w_at = [&](int64_t k, int64_t j) {
      return at->alpha * b.data<float>()[at->trans_b ? j * K + k : k * N + j];
    };
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) w_scale[j] = std::max(w_scale[j], std::fabs(w_at(k, j)));
    for (float& s : w_scale) s = s > 0 ? s / 127.f : 1.f;
    std::vector<int8_t> wq(static_cast<size_t>(K * N));
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j)
        wq[k * N + j] = static_cast<int8_t>(quantize_saturate(w_at(k, j) / w_scale[j], -127, 127));
    const std::vector<float> bias = bias_vector(g, n, *at, N);
    const std::string wname = g.values[n.inputs[1]].name;
    Value wv, sv;
    wv.name = wname + "::int8";
    wv.set_constant(Tensor::from_vector(DataType::kInt8, {K, N}, wq));
    sv.name = wname + "::scale";
    sv.set_constant(Tensor::from_vector(DataType::kFloat32, {N}, w_scale));
    int bias_id = kNoValue;
    if (!bias.empty()) {
      Value bv;
      bv.name = g.values[n.inputs[2]].name + "::bias";
      bv.set_constant(Tensor::from_vector(DataType::kFloat32, {N}, bias));
      bias_id = g.add_value(std::move(bv));
    }
    const int out = n.outputs[0];
    Node qg;
    qg.name = n.name;
    qg.domain = "kiln";
    qg.op_type = "QGemm";
    qg.opset = 1;
    qg.origins = n.origins;
    qg.precision = "int8";
    qg.inputs = {a_q, g.add_value(std::move(wv)), bias_id, g.add_value(std::move(sv))};
    qg.outputs = {out};
    qg.attrs.set("a_scale", a_scale);
    qg.attrs.set("y_scale", chained(out) ? scales.at(g.values[out].name) : 0.f);
    if (at->activation != Activation::kNone) {
      qg.attrs.set("activation", std::string(activation_name(at->activation)));
      if (at->activation == Activation::kLeakyRelu) qg.attrs.set("activation_alpha", at->activation_alpha);
    }
    g.values[out].dtype = chained(out) ? DataType::kInt8 : DataType::kFloat32;
    out_nodes.push_back(std::move(qg));
  }
  g.nodes = std::move(out_nodes);
  return g.verify();
}

}  // namespace kiln::quant
