#include "builder/shape_inference.h"

#include <fmt/format.h>

#include "kiln/builder.h"

namespace kiln {

Status infer_concrete_shapes(const Graph& g, const std::vector<Dims>& input_shapes, std::vector<TensorDesc>* out) {
  out->assign(g.values.size(), TensorDesc{});
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].constant) (*out)[v] = {g.values[v].constant->dtype, g.values[v].constant->shape};
  for (size_t i = 0; i < g.inputs.size(); ++i) (*out)[g.inputs[i]] = {g.values[g.inputs[i]].dtype, input_shapes[i]};
  std::vector<TensorDesc> ins, outs;
  for (const Node& n : g.nodes) {
    ins.clear();
    for (int v : n.inputs) ins.push_back(v == kNoValue ? TensorDesc{} : (*out)[v]);
    Status s = infer_node(n, g, ins, &outs);
    if (!s.is_ok()) return s;
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (outs[i].dtype == DataType::kUndefined) continue;  // unused optional output
      for (int64_t d : outs[i].shape)
        if (d < 0)
          return Status(StatusCode::kInternal, fmt::format("shape function produced a negative dim for output '{}'",
                                                           g.values[n.outputs[i]].name))
              .with_context(n.describe());
      (*out)[n.outputs[i]] = outs[i];
    }
  }
  return Status::ok();
}

Result<std::vector<ShapeProfile>> resolve_profiles(const Graph& g, const std::map<std::string, ShapeProfile>& given) {
  for (const auto& [name, p] : given) {
    int v = g.find_value(name);
    if (v == kNoValue || !g.is_graph_input(v)) {
      std::string names;
      for (int i : g.inputs) names += (names.empty() ? "" : ", ") + g.values[i].name;
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("a shape profile names '{}', which is not an input of the model (inputs: {})", name, names));
    }
  }
  std::vector<ShapeProfile> out;
  for (int v : g.inputs) {
    const Value& val = g.values[v];
    auto it = given.find(val.name);
    ShapeProfile p;
    if (it == given.end()) {
      p.min = p.opt = p.max = val.shape;
      for (size_t d = 0; d < val.shape.size(); ++d)
        if (val.shape[d] < 0) {
          p.min[d] = 1;
          p.opt[d] = 1;
          p.max[d] = kDefaultMaxDim;
        }
    } else {
      p = it->second;
      auto where = fmt::format("profile of input '{}' (declared [{}])", val.name, dims_to_string(val.shape, ","));
      if (p.min.size() != val.shape.size() || p.opt.size() != val.shape.size() || p.max.size() != val.shape.size())
        return Status(StatusCode::kInvalidArgument, fmt::format("min/opt/max must all have rank {}", val.shape.size()))
            .with_context(where);
      for (size_t d = 0; d < val.shape.size(); ++d) {
        if (p.min[d] < 0 || !(p.min[d] <= p.opt[d] && p.opt[d] <= p.max[d]))
          return Status(StatusCode::kInvalidArgument,
                        fmt::format("dim {} needs 0 <= min <= opt <= max, got min={} opt={} max={}", d, p.min[d],
                                    p.opt[d], p.max[d]))
              .with_context(where);
        if (val.shape[d] >= 0 && (p.min[d] != val.shape[d] || p.max[d] != val.shape[d]))
          return Status(StatusCode::kInvalidArgument,
                        fmt::format("dim {} is fixed to {} in the model, the profile asks for {}..{}", d, val.shape[d],
                                    p.min[d], p.max[d]))
              .with_context(where);
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

Status annotate_static_shapes(Graph& g, const std::vector<ShapeProfile>& profiles, std::vector<uint64_t>* max_bytes) {
  std::vector<std::vector<TensorDesc>> at(3);
  for (int k = 0; k < 3; ++k) {
    std::vector<Dims> in;
    for (const auto& p : profiles) in.push_back(k == 0 ? p.min : k == 1 ? p.opt : p.max);
    Status s = infer_concrete_shapes(g, in, &at[k]);
    if (!s.is_ok()) {
      static const char* names[] = {"min", "opt", "max"};
      return std::move(s).with_context(fmt::format("shape inference at the profile's {} shapes", names[k]));
    }
  }
  // Input dims that vary, with the value triple they take, to name derived dims after them.
  struct Sym { int64_t v[3]; std::string name; };
  std::vector<Sym> syms;
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const Value& in = g.values[g.inputs[i]];
    for (size_t d = 0; d < profiles[i].min.size(); ++d)
      if (profiles[i].min[d] != profiles[i].max[d]) {
        std::string n = d < in.dim_params.size() && !in.dim_params[d].empty()
                            ? in.dim_params[d] : fmt::format("{}_dim{}", in.name, d);
        syms.push_back({{profiles[i].min[d], profiles[i].opt[d], profiles[i].max[d]}, n});
      }
  }
  max_bytes->assign(g.values.size(), 0);
  for (size_t v = 0; v < g.values.size(); ++v) {
    Value& val = g.values[v];
    if (at[0][v].dtype == DataType::kUndefined) continue;
    val.dtype = at[0][v].dtype;
    val.rank_known = true;
    const Dims& a = at[0][v].shape;
    val.shape = a;
    val.dim_params.assign(a.size(), "");
    for (size_t d = 0; d < a.size(); ++d) {
      int64_t t[3] = {at[0][v].shape[d], at[1][v].shape[d], at[2][v].shape[d]};
      if (t[0] == t[1] && t[1] == t[2]) continue;
      val.shape[d] = kDynamicDim;
      for (const auto& s : syms)
        if (s.v[0] == t[0] && s.v[1] == t[1] && s.v[2] == t[2]) val.dim_params[d] = s.name;
    }
    for (int k = 0; k < 3; ++k)
      (*max_bytes)[v] = std::max<uint64_t>((*max_bytes)[v], static_cast<uint64_t>(volume(at[k][v].shape)) *
                                                                dtype_size(at[k][v].dtype));
  }
  return Status::ok();
}

}  // namespace kiln
