// Squeeze and Unsqueeze: views. Axes are an attribute before opset 13 and an (constant) input from 13;
// negative axes count from the end (of the output, for Unsqueeze). Squeeze without axes drops every 1.
#include <algorithm>

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {
namespace {

bool is_squeeze(const Node& node) { return node.op_type == "Squeeze"; }

Status check_squeeze_like(const Node& node) {
  const bool attr_form = node.opset < 13;
  Status s = attr_form ? check_attributes(node, {"axes"}) : check_attributes(node, {});
  if (!s.is_ok()) return s;
  if (!is_squeeze(node) && attr_form && !node.attrs.has("axes"))
    return Status(StatusCode::kInvalidArgument, "Unsqueeze: attribute 'axes' is required before opset 13");
  auto axes = node.attrs.get_ints("axes", {});
  if (!axes.is_ok()) return axes.status();
  if (attr_form) return check_arity(node, 1, 1);
  return is_squeeze(node) ? check_arity(node, 1, 2) : check_arity(node, 2, 2);
}

// Normalizes against rank and rejects duplicates; sorted ascending.
Result<std::vector<int64_t>> normalize_axes(const Node& node, std::vector<int64_t> axes, int64_t rank) {
  for (int64_t& a : axes) {
    auto n = normalize_axis(a, rank);
    if (!n.is_ok())
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: axis {} is out of range for rank {}", node.op_type, a, rank));
    a = *n;
  }
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: axes {} repeat an axis", node.op_type,
                                                            shape_str(axes)));
  return axes;
}

// axes == nullopt means "not given" (Squeeze removes every 1).
Result<Dims> squeeze_like_shape(const Node& node, const Dims& in, const std::optional<std::vector<int64_t>>& axes) {
  const int64_t rank = static_cast<int64_t>(in.size());
  if (is_squeeze(node)) {
    Dims out;
    if (!axes) {
      for (int64_t d : in) if (d != 1) out.push_back(d);
      return out;
    }
    auto ax = normalize_axes(node, *axes, rank);
    if (!ax.is_ok()) return ax.status();
    for (int64_t a : *ax)
      if (in[a] != 1)
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("Squeeze: axis {} of input {} has size {}, not 1", a, shape_str(in), in[a]));
    for (int64_t d = 0; d < rank; ++d)
      if (!std::binary_search(ax->begin(), ax->end(), d)) out.push_back(in[d]);
    return out;
  }
  if (!axes) return Status(StatusCode::kInvalidArgument, "Unsqueeze: axes are required");
  const int64_t out_rank = rank + static_cast<int64_t>(axes->size());
  auto ax = normalize_axes(node, *axes, out_rank);
  if (!ax.is_ok()) return ax.status();
  Dims out;
  size_t next_in = 0;
  for (int64_t d = 0; d < out_rank; ++d)
    out.push_back(std::binary_search(ax->begin(), ax->end(), d) ? 1 : in[next_in++]);
  return out;
}

Result<std::optional<std::vector<int64_t>>> attr_axes(const Node& node) {
  if (!node.attrs.has("axes")) return std::optional<std::vector<int64_t>>{};
  auto axes = node.attrs.get_ints("axes", {});
  if (!axes.is_ok()) return axes.status();
  return std::optional<std::vector<int64_t>>(*axes);
}

Status infer_squeeze_like(InferContext& ctx) {
  auto axes = attr_axes(ctx.node);
  if (!axes.is_ok()) return axes.status();
  if (ctx.node.opset >= 13 && ctx.has_input(1)) {
    if (!ctx.constants[1])
      return Status(StatusCode::kUnsupported, fmt::format("{}: the axes input must be a constant", ctx.node.op_type));
    if (ctx.inputs[1].dtype != DataType::kInt64)
      return Status(StatusCode::kInvalidArgument, fmt::format("{}: axes input must be int64, got {}",
                                                              ctx.node.op_type, dtype_name(ctx.inputs[1].dtype)));
    *axes = tensor_to_int64s(*ctx.constants[1]);
  }
  auto out = squeeze_like_shape(ctx.node, ctx.inputs[0].shape, *axes);
  if (!out.is_ok()) return out.status();
  ctx.outputs[0] = {ctx.inputs[0].dtype, *out};
  return Status::ok();
}

Status reference_squeeze_like(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  auto axes = attr_axes(ctx.node);
  if (!axes.is_ok()) return axes.status();
  if (ctx.node.opset >= 13 && ctx.inputs.size() > 1 && ctx.inputs[1])
    *axes = std::vector<int64_t>(ctx.inputs[1]->data.begin(), ctx.inputs[1]->data.end());
  auto out = squeeze_like_shape(ctx.node, X.shape, *axes);
  if (!out.is_ok()) return out.status();
  ctx.outputs[0] = RefTensor{X.dtype, *out, X.data};
  return Status::ok();
}

OpDef squeeze_like_def(const char* op_type) {
  OpDef def = op_def(op_type, check_squeeze_like, infer_squeeze_like, reference_squeeze_like);
  def.value_inputs = {1};  // axes (opset >= 13)
  def.is_view = true;
  return def;
}

const OpRegistrar kSqueeze{squeeze_like_def("Squeeze")};
const OpRegistrar kUnsqueeze{squeeze_like_def("Unsqueeze")};

}  // namespace
}  // namespace kiln
