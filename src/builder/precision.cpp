#include "builder/precision.h"

#include <fmt/format.h>

#include "ops/float16.h"

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

bool is_gemm_like(const Node& n) {
  return n.op_type == "Gemm" || n.op_type == "MatMul" || (n.domain == "kiln" && n.op_type == "FusedGemm");
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
    for (Value& v : g.values)
      if (v.constant && v.dtype == DataType::kFloat32) v.set_constant(to_half(*v.constant));
    for (Node& n : g.nodes)
      if (n.op_type == "Cast" && n.domain.empty()) {
        auto to = n.attrs.get_int("to", 0);
        if (to.is_ok() && *to == static_cast<int64_t>(DataType::kFloat32))
          n.attrs.set("to", static_cast<int64_t>(DataType::kFloat16));
      }
  }
  std::vector<Node> casts;
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
    Value inside = g.values[v];
    inside.name += "/to_" + std::string(dtype_name(inner));
    inside.dtype = inner;
    const int w = g.add_value(std::move(inside));
    for (Node& n : g.nodes)
      for (int& in : n.inputs)
        if (in == v) in = w;
    casts.push_back(cast_node(g.values[w].name, v, w, inner));
  }
  g.nodes.insert(g.nodes.begin(), casts.begin(), casts.end());
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
    bool half = false;
    for (int v : n.outputs) half = half || (v >= 0 && g.values[v].dtype == DataType::kFloat16);
    for (int v : n.inputs) half = half || (v >= 0 && g.values[v].dtype == DataType::kFloat16);
    if (half) n.precision = "fp16";
    else if (is_gemm_like(n)) n.precision = c.tf32 ? "tf32" : "fp32";
    else n.precision = "fp32";
  }
  return Status::ok();
}

}  // namespace kiln
