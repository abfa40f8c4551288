#include <fmt/format.h>

#include "ops/op.h"

namespace kiln {

OpRegistry& OpRegistry::instance() {
  static OpRegistry registry;
  return registry;
}

Status OpRegistry::add(OpDef def) {
  if (find(def.domain, def.op_type))
    return Status(StatusCode::kInternal, fmt::format("operator '{}' registered twice", def.op_type));
  defs_.push_back(std::make_unique<OpDef>(std::move(def)));
  return Status::ok();
}

const OpDef* OpRegistry::find(const std::string& domain, const std::string& op_type) const {
  const std::string d = domain == "ai.onnx" ? "" : domain;
  for (const auto& p : defs_)
    if (p->domain == d && p->op_type == op_type) return p.get();
  return nullptr;
}

std::vector<const OpDef*> OpRegistry::all() const {
  std::vector<const OpDef*> out;
  for (const auto& p : defs_) out.push_back(p.get());
  return out;
}

OpRegistrar::OpRegistrar(OpDef def) {
  Status s = OpRegistry::instance().add(std::move(def));
  if (!s.is_ok()) {
    // Static initialization cannot return an error; a duplicate registration is a build bug.
    fmt::print(stderr, "kiln: {}\n", s.to_string());
  }
}

Result<Dims> broadcast_shapes(const Dims& a, const Dims& b) {
  const size_t rank = std::max(a.size(), b.size());
  Dims out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) out[i] = da;
    else if (da == 1) out[i] = db;
    else
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("shapes [{}] and [{}] cannot be broadcast", dims_to_string(a, ","),
                                dims_to_string(b, ",")));
  }
  return out;
}

Result<int64_t> normalize_axis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank)
    return Status(StatusCode::kInvalidArgument, fmt::format("axis {} is out of range for rank {}", axis, rank));
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> tensor_to_int64s(const Tensor& t) {
  std::vector<int64_t> v(static_cast<size_t>(std::max<int64_t>(t.elements(), 0)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.get_int64(static_cast<int64_t>(i));
  return v;
}

Status infer_node(const Node& node, const Graph& g, const std::vector<TensorDesc>& inputs,
                  std::vector<TensorDesc>* outputs) {
  const OpDef* def = OpRegistry::instance().find(node.domain, node.op_type);
  if (!def) return Status(StatusCode::kUnsupported, "no operator definition").with_context(node.describe());
  InferContext ctx{node, inputs, {}, {}};
  ctx.constants.resize(node.inputs.size(), nullptr);
  for (size_t i = 0; i < node.inputs.size(); ++i)
    if (g.is_constant(node.inputs[i])) ctx.constants[i] = &*g.values[node.inputs[i]].constant;
  ctx.outputs.resize(node.outputs.size());
  Status s = def->infer(ctx);
  if (!s.is_ok()) return std::move(s).with_context(node.describe());
  *outputs = std::move(ctx.outputs);
  return Status::ok();
}

}  // namespace kiln
