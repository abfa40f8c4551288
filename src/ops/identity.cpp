// Identity and Dropout (inference only: output = input). Both are views of input 0. Dropout's optional
// mask output is all true: bool from opset 10, the input's dtype (ones) before that.
#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {
namespace {

Status check_identity(const Node& node) {
  Status s = check_attributes(node, {});
  if (!s.is_ok()) return s;
  return check_arity(node, 1, 1);
}

Status infer_identity(InferContext& ctx) {
  ctx.outputs[0] = ctx.inputs[0];
  return Status::ok();
}

Status reference_identity(RefContext& ctx) {
  ctx.outputs[0] = *ctx.inputs[0];
  return Status::ok();
}

const char* kTrainingUnsupported = "Dropout in training mode is not supported: Kiln runs inference only";

Status check_dropout(const Node& node) {
  // `seed` only matters in training mode; consumed_inputs (opset < 6) was a memory hint.
  Status s = node.opset < 6    ? check_attributes(node, {"is_test", "ratio", "consumed_inputs"})
             : node.opset < 7  ? check_attributes(node, {"is_test", "ratio"})
             : node.opset < 12 ? check_attributes(node, {"ratio"})
                               : check_attributes(node, {"seed"});
  if (!s.is_ok()) return s;
  auto ratio = node.attrs.get_float("ratio", 0.5f);
  if (!ratio.is_ok()) return ratio.status();
  // An absent is_test is taken as inference (the spec's default 0 means training, which Kiln never runs).
  auto is_test = node.attrs.get_int("is_test", 1);
  if (!is_test.is_ok()) return is_test.status();
  if (*is_test == 0) return Status(StatusCode::kUnsupported, std::string(kTrainingUnsupported) + " (is_test=0)");
  return check_arity(node, 1, node.opset >= 12 ? 3 : 1, 1, 2);
}

DataType mask_dtype(const Node& node, DataType input) { return node.opset >= 10 ? DataType::kBool : input; }

Status infer_dropout(InferContext& ctx) {
  if (ctx.has_input(2)) {
    if (!ctx.constants[2])
      return Status(StatusCode::kUnsupported, "Dropout: the training_mode input must be a constant");
    if (ctx.constants[2]->elements() != 1)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("Dropout: training_mode must be a scalar, got {}", shape_str(ctx.inputs[2].shape)));
    if (ctx.constants[2]->get_double(0) != 0)
      return Status(StatusCode::kUnsupported, std::string(kTrainingUnsupported) + " (training_mode=true)");
  }
  ctx.outputs[0] = ctx.inputs[0];
  if (ctx.outputs.size() > 1) ctx.outputs[1] = {mask_dtype(ctx.node, ctx.inputs[0].dtype), ctx.inputs[0].shape};
  return Status::ok();
}

Status reference_dropout(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  if (ctx.inputs.size() > 2 && ctx.inputs[2] && !ctx.inputs[2]->data.empty() && ctx.inputs[2]->data[0] != 0)
    return Status(StatusCode::kUnsupported, std::string(kTrainingUnsupported) + " (training_mode=true)");
  ctx.outputs[0] = X;
  if (ctx.outputs.size() > 1)
    ctx.outputs[1] = RefTensor{mask_dtype(ctx.node, X.dtype), X.shape, std::vector<double>(X.data.size(), 1.0)};
  return Status::ok();
}

OpDef identity_def() {
  OpDef def = op_def("Identity", check_identity, infer_identity, reference_identity);
  def.is_view = true;
  return def;
}

OpDef dropout_def() {
  OpDef def = op_def("Dropout", check_dropout, infer_dropout, reference_dropout);
  def.value_inputs = {2};  // training_mode: must be a known false
  def.is_view = true;
  return def;
}

const OpRegistrar kIdentity{identity_def()};
const OpRegistrar kDropout{dropout_def()};

}  // namespace
}  // namespace kiln
