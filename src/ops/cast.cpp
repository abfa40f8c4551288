// Cast (opset 6+; the string-typed `to` of opset 1 is not supported). `saturate` (opset 19+) only affects
// float8 targets, which Kiln does not have, so it is accepted and ignored.
#include "ops/cast.h"

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<DataType> cast_target(const Node& node) {
  if (!node.attrs.has("to")) return Status(StatusCode::kInvalidArgument, "Cast: attribute 'to' is required");
  auto to = node.attrs.get_int("to", 0);
  if (!to.is_ok()) return to.status();
  DataType dt;
  if (!dtype_from_onnx(static_cast<int32_t>(*to), &dt))
    return Status(StatusCode::kUnsupported, fmt::format("Cast: target type {} (ONNX TensorProto code) is not supported", *to));
  return dt;
}

namespace {

Status check_cast(const Node& node) {
  Status s = node.opset >= 19 ? check_attributes(node, {"to", "saturate"}) : check_attributes(node, {"to"});
  if (!s.is_ok()) return s;
  auto to = cast_target(node);
  if (!to.is_ok()) return to.status();
  return check_arity(node, 1, 1);
}

Status infer_cast(InferContext& ctx) {
  auto to = cast_target(ctx.node);
  if (!to.is_ok()) return to.status();
  ctx.outputs[0] = {*to, ctx.inputs[0].shape};
  return Status::ok();
}

Status reference_cast(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  auto to = cast_target(ctx.node);
  if (!to.is_ok()) return to.status();
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = *to;
  Y.shape = X.shape;
  Y.data.resize(X.data.size());
  for (size_t i = 0; i < X.data.size(); ++i) Y.data[i] = cast_double(X.data[i], *to);
  return Status::ok();
}

OpDef cast_def() {
  OpDef def = op_def("Cast", check_cast, infer_cast, reference_cast);
  def.min_opset = 6;
  return def;
}

const OpRegistrar kCast{cast_def()};

}  // namespace
}  // namespace kiln
