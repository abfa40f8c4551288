// Concat (opset 1, 4, 11, 13): joins inputs along one axis. Zero-size inputs are allowed.
#include "ops/concat.h"

#include <limits>

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<int64_t> concat_axis(const Node& node, size_t rank) {
  // Opset 1 made axis optional with default 1; from opset 4 it is required.
  auto axis = node.attrs.get_int("axis", 1);
  if (!axis.is_ok()) return axis.status();
  auto n = normalize_axis(*axis, static_cast<int64_t>(rank));
  if (!n.is_ok())
    return Status(StatusCode::kInvalidArgument, fmt::format("Concat: axis {} is out of range for rank {}", *axis, rank));
  return *n;
}

Result<Dims> concat_shape(const Node& node, const std::vector<Dims>& inputs) {
  if (inputs.empty()) return Status(StatusCode::kInvalidArgument, "Concat: needs at least one input");
  auto axis = concat_axis(node, inputs[0].size());
  if (!axis.is_ok()) return axis.status();
  Dims out = inputs[0];
  out[*axis] = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Dims& d = inputs[i];
    bool ok = d.size() == out.size();
    for (size_t k = 0; ok && k < d.size(); ++k) ok = static_cast<int64_t>(k) == *axis || d[k] == out[k];
    if (!ok)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("Concat: input {} has shape {}, which does not match input 0 {} outside axis {}", i,
                                shape_str(d), shape_str(inputs[0]), *axis));
    out[*axis] += d[*axis];
  }
  return out;
}

namespace {

Status check_concat(const Node& node) {
  Status s = check_attributes(node, {"axis"});
  if (!s.is_ok()) return s;
  if (node.opset >= 4 && !node.attrs.has("axis"))
    return Status(StatusCode::kInvalidArgument, "Concat: attribute 'axis' is required");
  auto axis = node.attrs.get_int("axis", 1);
  if (!axis.is_ok()) return axis.status();
  s = check_arity(node, 1, std::numeric_limits<size_t>::max());
  if (!s.is_ok()) return s;
  for (size_t i = 0; i < node.inputs.size(); ++i)
    if (node.inputs[i] == kNoValue)
      return Status(StatusCode::kInvalidArgument, fmt::format("Concat: input {} is missing", i));
  return Status::ok();
}

Status infer_concat(InferContext& ctx) {
  std::vector<Dims> shapes;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    if (ctx.inputs[i].dtype != ctx.inputs[0].dtype)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("Concat: input {} is {} but input 0 is {}", i, dtype_name(ctx.inputs[i].dtype),
                                dtype_name(ctx.inputs[0].dtype)));
    shapes.push_back(ctx.inputs[i].shape);
  }
  auto out = concat_shape(ctx.node, shapes);
  if (!out.is_ok()) return out.status();
  ctx.outputs[0] = {ctx.inputs[0].dtype, *out};
  return Status::ok();
}

Status reference_concat(RefContext& ctx) {
  std::vector<Dims> shapes;
  for (const RefTensor* t : ctx.inputs) shapes.push_back(t->shape);
  auto out = concat_shape(ctx.node, shapes);
  if (!out.is_ok()) return out.status();
  const int64_t axis = concat_axis(ctx.node, shapes[0].size()).value();
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= (*out)[d];
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = ctx.inputs[0]->dtype;
  Y.shape = *out;
  Y.data.clear();
  Y.data.reserve(static_cast<size_t>(volume(*out)));
  // Each input contributes one contiguous chunk per outer index.
  for (int64_t o = 0; o < outer; ++o)
    for (const RefTensor* t : ctx.inputs) {
      const int64_t chunk = outer == 0 ? 0 : t->elements() / outer;
      Y.data.insert(Y.data.end(), t->data.begin() + o * chunk, t->data.begin() + (o + 1) * chunk);
    }
  return Status::ok();
}

const OpRegistrar kConcat{op_def("Concat", check_concat, infer_concat, reference_concat)};

}  // namespace
}  // namespace kiln
