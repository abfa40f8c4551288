#include "builder/precision.h"

#include <map>
#include <set>

#include <fmt/format.h>

#include "ops/float16.h"
#include "ops/op.h"

namespace kiln {
namespace {

DataType internal_float(const BuilderConfig& c) { return c.fp16 ? DataType::kFloat16 : DataType::kFloat32; }

DataType io_format(const std::vector<DataType>& formats, size_t i) {
  return i < formats.size() ? formats[i] : DataType::kFloat32;
}

Tensor to_half(const Tensor& t) {
  std::vector<uint16_t> h(static_cast<size_t>(t.elements()));
  const float* f = t.data<float>();
  for (size_t i = 0; i < h.size(); ++i) h[i] = double_to_half(f[i]);
  return Tensor::from_vector(DataType::kFloat16, t.shape, h);
}

Node cast_node(const std::string& name, int in, int out, DataType to) {
  Node n;
  n.name = name;
  n.op_type = "Cast";
  n.opset = 19;
  n.inputs = {in};
  n.outputs = {out};
  n.attrs.set("to", static_cast<int64_t>(to));
  n.origins = {};
  return n;
}

bool is_fused_mlp(const Node& n) { return n.domain == "kiln" && n.op_type == "FusedMLP"; }

bool is_gemm_like(const Node& n) {
  return n.op_type == "Gemm" || n.op_type == "MatMul" || (n.domain == "kiln" && n.op_type == "FusedGemm") ||
         is_fused_mlp(n);
}

// kiln.FusedMLP takes FP32 X with FP16 weights and converts X in its kernel (ops/fused_mlp.h), which is
// cheaper than a Cast layer over the input (at large batch the input is by far the biggest tensor). True
// when every path from value v ends in a FusedMLP, through view ops (Flatten, Reshape...) that only feed
// such paths: then v and those views can stay FP32.
bool only_feeds_fused_mlp(const Graph& g, const std::vector<std::vector<int>>& consumers, int v) {
  if (g.is_graph_output(v) || consumers[v].empty()) return false;
  for (int c : consumers[v]) {
    const Node& n = g.nodes[c];
    if (is_fused_mlp(n) && n.inputs[0] == v) continue;
    const OpDef* def = OpRegistry::instance().find(n.domain, n.op_type);
    if (def && def->is_view && n.inputs[0] == v && n.outputs.size() == 1 &&
        only_feeds_fused_mlp(g, consumers, n.outputs[0]))
      continue;
    return false;
  }
  return true;
}

// INT8 layers (QuantizeLinear, kiln.QGemm) compute from float32 data and write float32 or int8: with --fp16
// their float parameters stay float32, and Casts join them to the FP16 layers around them.
bool is_int8_layer(const Node& n) { return n.precision == "int8"; }

std::set<int> int8_parameters(const Graph& g) {
  std::set<int> keep;
  for (const Node& n : g.nodes)
    if (is_int8_layer(n))
      for (size_t i = 1; i < n.inputs.size(); ++i)
        if (g.is_constant(n.inputs[i])) keep.insert(n.inputs[i]);
  return keep;
}

// A new value like v but of dtype dt, named after v, produced by a Cast from `from`.
int add_cast(Graph& g, std::vector<Node>* casts, int from, int like, DataType dt, const std::string& suffix) {
  Value cv = g.values[like];
  cv.name += suffix;
  cv.dtype = dt;
  cv.constant.reset();
  const int w = g.add_value(std::move(cv));
  casts->push_back(cast_node(g.values[w].name, from, w, dt));
  return w;
}

// Casts at the borders of INT8 layers in an FP16 graph (graph inputs are handled by the IO casts).
void join_int8_layers_to_fp16(Graph& g) {
  std::vector<Node> nodes;
  std::map<int, int> as_fp32;  // FP16 activation -> its FP32 copy for INT8 layers
  std::map<int, int> as_fp16;  // FP32 output of a QGemm -> its FP16 copy for float layers
  for (Node& n : g.nodes) {
    std::vector<Node> before;
    const int x0 = n.inputs.empty() ? kNoValue : n.inputs[0];
    const bool fp16_source = g.is_graph_input(x0) ? g.values[x0].dtype == DataType::kFloat16 : true;
    if (is_int8_layer(n) && n.op_type == "QuantizeLinear" && fp16_source) {
      const int x = n.inputs[0];
      auto it = as_fp32.find(x);
      if (it == as_fp32.end())
        it = as_fp32.emplace(x, add_cast(g, &before, x, x, DataType::kFloat32, "/to_float32")).first;
      n.inputs[0] = it->second;
    }
    if (!is_int8_layer(n))
      for (int& in : n.inputs)
        if (auto it = as_fp16.find(in); it != as_fp16.end()) in = it->second;
    nodes.insert(nodes.end(), before.begin(), before.end());
    nodes.push_back(n);
    if (is_int8_layer(n) && n.op_type == "QGemm" && g.values[n.outputs[0]].dtype == DataType::kFloat32) {
      std::vector<Node> after;
      as_fp16[n.outputs[0]] = add_cast(g, &after, n.outputs[0], n.outputs[0], DataType::kFloat16, "/to_float16");
      nodes.insert(nodes.end(), after.begin(), after.end());
    }
  }
  g.nodes = std::move(nodes);
}

// With FP16 layers, a FusedMLP whose X stays FP32 writes FP32 (Y has X's dtype): other layers reading Y
// get it through a Cast to FP16 (graph outputs are left to fix_output_precision).
void cast_fp32_mlp_outputs(Graph& g, const std::set<int>& fp32_inputs) {
  const auto producers = g.producers();
  auto is_view = [&](int p) {
    const OpDef* def = p >= 0 ? OpRegistry::instance().find(g.nodes[p].domain, g.nodes[p].op_type) : nullptr;
    return def && def->is_view;
  };
  std::vector<Node> nodes;
  for (Node& n : g.nodes) {
    nodes.push_back(n);
    if (!is_fused_mlp(n)) continue;
    int x = n.inputs[0];
    while (!fp32_inputs.count(x) && is_view(producers[x])) x = g.nodes[producers[x]].inputs[0];
    if (!fp32_inputs.count(x)) continue;
    const int y = n.outputs[0];
    bool read = false;
    for (const Node& other : g.nodes)
      for (int in : other.inputs) read = read || in == y;
    if (!read) continue;
    std::vector<Node> after;
    const int half = add_cast(g, &after, y, y, DataType::kFloat16, "/to_float16");
    for (Node& other : g.nodes)
      for (int& in : other.inputs)
        if (in == y) in = half;
    nodes.insert(nodes.end(), after.begin(), after.end());
  }
  g.nodes = std::move(nodes);
}

}  // namespace

Status apply_precision(Graph& g, const BuilderConfig& c) {
  if (c.input_formats.size() > g.inputs.size())
    return Status(StatusCode::kInvalidArgument, fmt::format("{} input formats given, but the model has {} input(s)",
                                                            c.input_formats.size(), g.inputs.size()));
  if (c.output_formats.size() > g.outputs.size())
    return Status(StatusCode::kInvalidArgument, fmt::format("{} output formats given, but the model has {} output(s)",
                                                            c.output_formats.size(), g.outputs.size()));
  const DataType inner = internal_float(c);
  if (c.fp16) {
    const std::set<int> keep = int8_parameters(g);
    for (size_t i = 0; i < g.values.size(); ++i) {
      Value& v = g.values[i];
      if (v.constant && v.dtype == DataType::kFloat32 && !keep.count(static_cast<int>(i))) v.set_constant(to_half(*v.constant));
    }
    for (Node& n : g.nodes)
      if (n.op_type == "Cast" && n.domain.empty()) {
        auto to = n.attrs.get_int("to", 0);
        if (to.is_ok() && *to == static_cast<int64_t>(DataType::kFloat32))
          n.attrs.set("to", static_cast<int64_t>(DataType::kFloat16));
      }
  }
  std::vector<Node> casts;
  std::set<int> fp32_for_mlp;  // FP32 inputs that only FusedMLP layers read (no Cast)
  const auto consumers = g.consumers();
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const int v = g.inputs[i];
    const DataType fmt = io_format(c.input_formats, i);
    if (g.values[v].dtype != DataType::kFloat32) {
      if (i < c.input_formats.size())
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("input '{}' is {}: IO formats apply to float32 tensors only", g.values[v].name,
                                  dtype_name(g.values[v].dtype)));
      continue;
    }
    g.values[v].dtype = fmt;
    if (fmt == inner) continue;
    if (fmt == DataType::kFloat32 && only_feeds_fused_mlp(g, consumers, v)) {
      fp32_for_mlp.insert(v);
      continue;
    }
    Value inside = g.values[v];
    inside.name += "/to_" + std::string(dtype_name(inner));
    inside.dtype = inner;
    const int w = g.add_value(std::move(inside));
    for (Node& n : g.nodes)
      for (int& in : n.inputs)
        if (in == v && !is_int8_layer(n)) in = w;  // INT8 layers read the FP32 input itself
    casts.push_back(cast_node(g.values[w].name, v, w, inner));
  }
  g.nodes.insert(g.nodes.begin(), casts.begin(), casts.end());
  if (!fp32_for_mlp.empty()) cast_fp32_mlp_outputs(g, fp32_for_mlp);
  if (c.fp16) join_int8_layers_to_fp16(g);
  return Status::ok();
}

Status fix_output_precision(Graph& g, const BuilderConfig& c, bool* changed) {
  *changed = false;
  const auto producers = g.producers();
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    const int v = g.outputs[i];
    const DataType have = g.values[v].dtype;
    if (have != DataType::kFloat32 && have != DataType::kFloat16) {
      if (i < c.output_formats.size())
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("output '{}' is {}: IO formats apply to float tensors only", g.values[v].name,
                                  dtype_name(have)));
      continue;
    }
    const DataType want = io_format(c.output_formats, i);
    if (have == want) continue;
    const int p = producers[v];
    if (p < 0)
      return Status(StatusCode::kUnsupported,
                    fmt::format("output '{}' is not produced by a layer and cannot change format", g.values[v].name));
    // The producer now writes an internal value; a Cast writes the graph output in its IO format.
    Value inside = g.values[v];
    inside.name += "/" + std::string(dtype_name(have));
    const int w = g.add_value(std::move(inside));
    for (int& out : g.nodes[p].outputs)
      if (out == v) out = w;
    for (Node& n : g.nodes)
      for (int& in : n.inputs)
        if (in == v) in = w;
    g.values[v].dtype = want;
    g.nodes.push_back(cast_node(g.values[v].name + "/cast", w, v, want));
    *changed = true;
  }
  for (Node& n : g.nodes) {
    if (n.precision == "int8") continue;  // set by the INT8 rewrite
    bool half = false;
    for (int v : n.outputs) half = half || (v >= 0 && g.values[v].dtype == DataType::kFloat16);
    for (int v : n.inputs) half = half || (v >= 0 && g.values[v].dtype == DataType::kFloat16);
    if (half) n.precision = "fp16";
    else if (is_gemm_like(n)) n.precision = c.tf32 ? "tf32" : "fp32";
    else n.precision = "fp32";
  }
  return Status::ok();
}

int mark_cpu_tf32_layers(Graph& g) {
  int marked = 0;
  for (Node& n : g.nodes)
    if (is_fused_mlp(n) && n.precision == "fp32") {
      n.precision = "tf32";
      ++marked;
    }
  return marked;
}

int mark_cpu_bf16_layers(Graph& g) {
  int marked = 0;
  for (Node& n : g.nodes)
    if (n.domain == "kiln" && n.op_type == "FusedMLP" && n.precision != "int8") {
      n.precision = "bf16";
      ++marked;
    }
  return marked;
}

}  // namespace kiln
