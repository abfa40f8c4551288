// Reshape (opset 5+; shape must be a constant input) and Flatten: views that only change the shape.
#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {
namespace {

// ONNX Reshape rules: 0 copies the input dim (or is a literal 0 with allowzero), one -1 is inferred.
Result<Dims> reshape_output_shape(const Dims& in, const std::vector<int64_t>& spec, bool allowzero) {
  auto fail = [&](const std::string& why) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("Reshape: cannot reshape {} to shape {}: {}", shape_str(in), shape_str(spec), why));
  };
  Dims out(spec.size());
  int infer_at = -1;
  bool has_zero = false;
  int64_t known = 1;
  for (size_t i = 0; i < spec.size(); ++i) {
    const int64_t d = spec[i];
    if (d == -1) {
      if (infer_at >= 0) return fail("more than one -1");
      infer_at = static_cast<int>(i);
      continue;
    }
    if (d < -1) return fail(fmt::format("invalid dimension {}", d));
    if (d == 0 && !allowzero) {
      if (i >= in.size()) return fail(fmt::format("0 at position {} has no input dimension to copy", i));
      out[i] = in[i];
    } else {
      out[i] = d;
      has_zero = has_zero || d == 0;
    }
    known *= out[i];
  }
  const int64_t total = volume(in);
  if (infer_at >= 0) {
    if (has_zero) return fail("-1 together with a literal 0 (allowzero=1) is ambiguous");
    if (known == 0) return fail("-1 cannot be inferred when the other dimensions multiply to 0");
    if (total % known != 0) return fail(fmt::format("{} elements do not divide into {}", total, known));
    out[infer_at] = total / known;
  } else if (known != total) {
    return fail(fmt::format("{} elements cannot become {}", total, known));
  }
  return out;
}

Status check_reshape(const Node& node) {
  Status s = node.opset >= 14 ? check_attributes(node, {"allowzero"}) : check_attributes(node, {});
  if (!s.is_ok()) return s;
  auto az = node.attrs.get_int("allowzero", 0);
  if (!az.is_ok()) return az.status();
  return check_arity(node, 2, 2);
}

Result<Dims> reshape_for(const Node& node, const Dims& in, const std::vector<int64_t>& spec) {
  auto az = node.attrs.get_int("allowzero", 0);
  if (!az.is_ok()) return az.status();
  return reshape_output_shape(in, spec, *az != 0);
}

Status infer_reshape(InferContext& ctx) {
  if (!ctx.constants[1])
    return Status(StatusCode::kUnsupported, "Reshape: the shape input must be a constant");
  if (ctx.inputs[1].dtype != DataType::kInt64)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("Reshape: shape input must be int64, got {}", dtype_name(ctx.inputs[1].dtype)));
  if (ctx.inputs[1].shape.size() != 1)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("Reshape: shape input must be 1-D, got {}", shape_str(ctx.inputs[1].shape)));
  auto out = reshape_for(ctx.node, ctx.inputs[0].shape, tensor_to_int64s(*ctx.constants[1]));
  if (!out.is_ok()) return out.status();
  ctx.outputs[0] = {ctx.inputs[0].dtype, *out};
  return Status::ok();
}

Status reference_reshape(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  const RefTensor& S = *ctx.inputs[1];
  std::vector<int64_t> spec(S.data.begin(), S.data.end());
  auto out = reshape_for(ctx.node, X.shape, spec);
  if (!out.is_ok()) return out.status();
  ctx.outputs[0] = RefTensor{X.dtype, *out, X.data};
  return Status::ok();
}

Result<Dims> flatten_shape(const Node& node, const Dims& in) {
  auto axis = node.attrs.get_int("axis", 1);
  if (!axis.is_ok()) return axis.status();
  const int64_t rank = static_cast<int64_t>(in.size());
  int64_t a = *axis;
  if (a < -rank || a > rank)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("Flatten: axis {} is out of range for input {}", a, shape_str(in)));
  if (a < 0) a += rank;
  Dims out{1, 1};
  for (int64_t d = 0; d < rank; ++d) out[d < a ? 0 : 1] *= in[d];
  return out;
}

Status check_flatten(const Node& node) {
  Status s = check_attributes(node, {"axis"});
  if (!s.is_ok()) return s;
  return check_arity(node, 1, 1);
}

Status infer_flatten(InferContext& ctx) {
  auto out = flatten_shape(ctx.node, ctx.inputs[0].shape);
  if (!out.is_ok()) return out.status();
  ctx.outputs[0] = {ctx.inputs[0].dtype, *out};
  return Status::ok();
}

Status reference_flatten(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  auto out = flatten_shape(ctx.node, X.shape);
  if (!out.is_ok()) return out.status();
  ctx.outputs[0] = RefTensor{X.dtype, *out, X.data};
  return Status::ok();
}

OpDef reshape_def() {
  OpDef def = op_def("Reshape", check_reshape, infer_reshape, reference_reshape);
  def.min_opset = 5;  // opset 1 took the shape as an attribute
  def.value_inputs = {1};
  def.is_view = true;
  return def;
}

OpDef flatten_def() {
  OpDef def = op_def("Flatten", check_flatten, infer_flatten, reference_flatten);
  def.is_view = true;
  return def;
}

const OpRegistrar kReshape{reshape_def()};
const OpRegistrar kFlatten{flatten_def()};

}  // namespace
}  // namespace kiln
