// QuantizeLinear (opset 10+) and DequantizeLinear (opset 10+), per-tensor or per-axis, int8/uint8
// (and int32 input to DequantizeLinear). Blocked quantization (opset 21 block_size) and float8/int4
// types are not supported and say so.
#include "ops/quantize.h"

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {
namespace {

constexpr int32_t kOnnxUInt8 = 2, kOnnxInt8 = 3;

Status check_common(const Node& node, bool quantize) {
  Status s = node.opset >= 21   ? check_attributes(node, {"axis", "saturate", "block_size", "output_dtype"})
             : node.opset >= 19 ? check_attributes(node, {"axis", "saturate"})
             : node.opset >= 13 ? check_attributes(node, {"axis"})
                                : check_attributes(node, {});
  if (!s.is_ok()) return s;
  auto block = node.attrs.get_int("block_size", 0);
  if (!block.is_ok()) return block.status();
  if (*block != 0) return Status(StatusCode::kUnsupported, "blocked quantization (block_size != 0) is not supported");
  auto odt = node.attrs.get_int("output_dtype", 0);
  if (!odt.is_ok()) return odt.status();
  if (*odt != 0 && (!quantize || (*odt != kOnnxUInt8 && *odt != kOnnxInt8)))
    return Status(StatusCode::kUnsupported,
                  fmt::format("output_dtype {} is not supported (int8 or uint8 outputs only)", *odt));
  return check_arity(node, 2, 3);
}

Status check_quantize(const Node& node) { return check_common(node, true); }
Status check_dequantize(const Node& node) { return check_common(node, false); }

// Per-tensor (scale has one element) or per-axis (scale is [C] with C = x.shape[axis]).
Result<int64_t> quant_axis(const Node& node, const Dims& x, const Dims& scale) {
  if (volume(scale) == 1 && scale.size() <= 1) return int64_t{-1};
  if (scale.size() != 1)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("scale must be a scalar or 1-D, got {}", shape_str(scale)));
  auto axis_attr = node.attrs.get_int("axis", 1);
  if (!axis_attr.is_ok()) return axis_attr.status();
  auto axis = normalize_axis(*axis_attr, static_cast<int64_t>(x.size()));
  if (!axis.is_ok()) return axis.status();
  if (x[*axis] != scale[0])
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("per-axis scale has {} elements but input {} has {} along axis {}", scale[0],
                              shape_str(x), x[*axis], *axis));
  return *axis;
}

Status check_zero_point(const InferContext& ctx, DataType want_int) {
  if (!ctx.has_input(2)) return Status::ok();
  if (ctx.inputs[2].shape != ctx.inputs[1].shape && volume(ctx.inputs[2].shape) != volume(ctx.inputs[1].shape))
    return Status(StatusCode::kInvalidArgument, fmt::format("zero point {} and scale {} differ in shape",
                                                            shape_str(ctx.inputs[2].shape), shape_str(ctx.inputs[1].shape)));
  if (want_int != DataType::kUndefined && ctx.inputs[2].dtype != want_int)
    return Status(StatusCode::kInvalidArgument, fmt::format("zero point is {}, input is {}", dtype_name(ctx.inputs[2].dtype),
                                                            dtype_name(want_int)));
  return Status::ok();
}

// The zero point's type when there is one (int8 or uint8), else output_dtype (opset 21), else uint8.
Result<DataType> quantize_output_dtype(const Node& node, DataType zero_point) {
  if (zero_point != DataType::kUndefined) {
    if (zero_point != DataType::kInt8 && zero_point != DataType::kUInt8)
      return Status(StatusCode::kUnsupported,
                    fmt::format("zero point type {} is not supported (int8 or uint8)", dtype_name(zero_point)));
    return zero_point;
  }
  auto odt = node.attrs.get_int("output_dtype", 0);
  if (!odt.is_ok()) return odt.status();
  return *odt == kOnnxInt8 ? DataType::kInt8 : DataType::kUInt8;
}

Status infer_quantize(InferContext& ctx) {
  const DataType xt = ctx.inputs[0].dtype;
  if (xt != DataType::kFloat32 && xt != DataType::kFloat16)
    return Status(StatusCode::kUnsupported, fmt::format("input is {}; float32 or float16 expected", dtype_name(xt)));
  if (ctx.inputs[1].dtype != xt)
    return Status(StatusCode::kInvalidArgument, fmt::format("scale is {}, input is {}", dtype_name(ctx.inputs[1].dtype),
                                                            dtype_name(xt)));
  auto axis = quant_axis(ctx.node, ctx.inputs[0].shape, ctx.inputs[1].shape);
  if (!axis.is_ok()) return axis.status();
  auto out = quantize_output_dtype(ctx.node, ctx.has_input(2) ? ctx.inputs[2].dtype : DataType::kUndefined);
  if (!out.is_ok()) return out.status();
  Status s = check_zero_point(ctx, DataType::kUndefined);
  if (!s.is_ok()) return s;
  ctx.outputs[0] = {*out, ctx.inputs[0].shape};
  return Status::ok();
}

Status infer_dequantize(InferContext& ctx) {
  const DataType xt = ctx.inputs[0].dtype;
  if (xt != DataType::kInt8 && xt != DataType::kUInt8 && xt != DataType::kInt32)
    return Status(StatusCode::kUnsupported, fmt::format("input is {}; int8, uint8 or int32 expected", dtype_name(xt)));
  const DataType st = ctx.inputs[1].dtype;
  if (st != DataType::kFloat32 && st != DataType::kFloat16)
    return Status(StatusCode::kUnsupported, fmt::format("scale is {}; float32 or float16 expected", dtype_name(st)));
  auto axis = quant_axis(ctx.node, ctx.inputs[0].shape, ctx.inputs[1].shape);
  if (!axis.is_ok()) return axis.status();
  Status s = check_zero_point(ctx, xt);
  if (!s.is_ok()) return s;
  ctx.outputs[0] = {st, ctx.inputs[0].shape};
  return Status::ok();
}

Status reference_quantize(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  const RefTensor& S = *ctx.inputs[1];
  const RefTensor* Z = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
  auto axis = quant_axis(ctx.node, X.shape, S.shape);
  if (!axis.is_ok()) return axis.status();
  auto out = quantize_output_dtype(ctx.node, Z ? Z->dtype : DataType::kUndefined);
  if (!out.is_ok()) return out.status();
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = *out;
  Y.shape = X.shape;
  Y.data.resize(X.data.size());
  const double lo = Y.dtype == DataType::kInt8 ? -128 : 0, hi = Y.dtype == DataType::kInt8 ? 127 : 255;
  const QuantAxisPlan plan = quant_axis_plan(X.shape, *axis);
  for (size_t i = 0; i < X.data.size(); ++i) {
    const int64_t c = plan.channel(static_cast<int64_t>(i));
    const double q = std::nearbyint(X.data[i] / S.data[c]) + (Z ? Z->data[c] : 0.0);
    Y.data[i] = std::isnan(q) ? 0.0 : std::clamp(q, lo, hi);
  }
  return Status::ok();
}

Status reference_dequantize(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  const RefTensor& S = *ctx.inputs[1];
  const RefTensor* Z = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
  auto axis = quant_axis(ctx.node, X.shape, S.shape);
  if (!axis.is_ok()) return axis.status();
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = S.dtype;
  Y.shape = X.shape;
  Y.data.resize(X.data.size());
  const QuantAxisPlan plan = quant_axis_plan(X.shape, *axis);
  for (size_t i = 0; i < X.data.size(); ++i) {
    const int64_t c = plan.channel(static_cast<int64_t>(i));
    Y.data[i] = (X.data[i] - (Z ? Z->data[c] : 0.0)) * S.data[c];
  }
  return Status::ok();
}

OpDef quant_def(std::string op, std::function<Status(const Node&)> check, std::function<Status(InferContext&)> infer,
                std::function<Status(RefContext&)> ref) {
  OpDef def = op_def(std::move(op), std::move(check), std::move(infer), std::move(ref));
  def.min_opset = 10;
  return def;
}

const OpRegistrar kQuantize{quant_def("QuantizeLinear", check_quantize, infer_quantize, reference_quantize)};
const OpRegistrar kDequantize{quant_def("DequantizeLinear", check_dequantize, infer_dequantize, reference_dequantize)};

}  // namespace

std::optional<float> constant_per_tensor_scale(const Node& node, const Graph& g) {
  if (node.inputs.size() < 2 || !g.is_constant(node.inputs[1])) return std::nullopt;
  const Tensor& s = *g.values[node.inputs[1]].constant;
  if (s.elements() != 1 || s.dtype != DataType::kFloat32) return std::nullopt;
  return s.data<float>()[0];
}

std::optional<float> int8_value_scale(const Graph& g, int value) {
  if (value < 0 || g.values[value].dtype != DataType::kInt8) return std::nullopt;
  for (const Node& n : g.nodes) {
    if (n.outputs.empty() || n.outputs[0] != value) continue;
    if (n.domain.empty() && n.op_type == "QuantizeLinear") return constant_per_tensor_scale(n, g);
    if (n.domain == "kiln" && n.op_type == "QGemm") {
      auto at = QGemmAttrs::parse(n);
      if (at.is_ok() && at->int8_output()) return at->y_scale;
    }
    return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace kiln
