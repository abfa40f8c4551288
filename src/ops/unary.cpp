// Relu, LeakyRelu (alpha, default 0.01), Sigmoid, Tanh: elementwise, output shape = input shape.
#include <fmt/format.h>

#include "ops/elementwise.h"
#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<UnaryOp> unary_op_from_type(const std::string& op_type) {
  if (op_type == "Relu") return UnaryOp::kRelu;
  if (op_type == "LeakyRelu") return UnaryOp::kLeakyRelu;
  if (op_type == "Sigmoid") return UnaryOp::kSigmoid;
  if (op_type == "Tanh") return UnaryOp::kTanh;
  return Status(StatusCode::kInternal, "not a unary elementwise op: " + op_type);
}

Result<float> unary_alpha(const Node& node) {
  if (node.op_type != "LeakyRelu") return 0.f;
  return node.attrs.get_float("alpha", 0.01f);
}

namespace {

Status check_unary(const Node& node) {
  // consumed_inputs (opset < 6) was a memory-reuse hint with no effect on results.
  const bool leaky = node.op_type == "LeakyRelu";
  Status s = node.opset < 6 ? (leaky ? check_attributes(node, {"alpha", "consumed_inputs"})
                                     : check_attributes(node, {"consumed_inputs"}))
                            : (leaky ? check_attributes(node, {"alpha"}) : check_attributes(node, {}));
  if (!s.is_ok()) return s;
  auto alpha = unary_alpha(node);
  if (!alpha.is_ok()) return alpha.status();
  return check_arity(node, 1, 1);
}

Status infer_unary(InferContext& ctx) {
  ctx.outputs[0] = ctx.inputs[0];
  return Status::ok();
}

template <UnaryOp Op>
void reference_loop(const RefTensor& X, double alpha, RefTensor* Y) {
  for (size_t i = 0; i < X.data.size(); ++i) Y->data[i] = apply_unary<Op>(X.data[i], alpha);
}

Status reference_unary(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  auto op = unary_op_from_type(ctx.node.op_type);
  if (!op.is_ok()) return op.status();
  auto alpha = unary_alpha(ctx.node);
  if (!alpha.is_ok()) return alpha.status();
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = X.dtype;
  Y.shape = X.shape;
  Y.data.resize(X.data.size());
  switch (*op) {
    case UnaryOp::kRelu: reference_loop<UnaryOp::kRelu>(X, *alpha, &Y); break;
    case UnaryOp::kLeakyRelu: reference_loop<UnaryOp::kLeakyRelu>(X, *alpha, &Y); break;
    case UnaryOp::kSigmoid: reference_loop<UnaryOp::kSigmoid>(X, *alpha, &Y); break;
    case UnaryOp::kTanh: reference_loop<UnaryOp::kTanh>(X, *alpha, &Y); break;
  }
  return Status::ok();
}

const OpRegistrar kRelu{op_def("Relu", check_unary, infer_unary, reference_unary)};
const OpRegistrar kLeakyRelu{op_def("LeakyRelu", check_unary, infer_unary, reference_unary)};
const OpRegistrar kSigmoid{op_def("Sigmoid", check_unary, infer_unary, reference_unary)};
const OpRegistrar kTanh{op_def("Tanh", check_unary, infer_unary, reference_unary)};

}  // namespace
}  // namespace kiln
