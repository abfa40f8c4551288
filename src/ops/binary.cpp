// Add, Sub, Mul, Div: numpy broadcasting (opset >= 7). Before opset 7 shapes must match unless the legacy
// `broadcast` attribute is set, which Kiln supports only without `axis` (suffix alignment = numpy rules).
// Integer Div truncates toward zero.
#include <cmath>

#include <fmt/format.h>

#include "ops/elementwise.h"
#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<BinaryOp> binary_op_from_type(const std::string& op_type) {
  if (op_type == "Add") return BinaryOp::kAdd;
  if (op_type == "Sub") return BinaryOp::kSub;
  if (op_type == "Mul") return BinaryOp::kMul;
  if (op_type == "Div") return BinaryOp::kDiv;
  return Status(StatusCode::kInternal, "not a binary elementwise op: " + op_type);
}

namespace {

Status check_binary(const Node& node) {
  Status s = node.opset < 6   ? check_attributes(node, {"broadcast", "axis", "consumed_inputs"})
             : node.opset < 7 ? check_attributes(node, {"broadcast", "axis"})
                              : check_attributes(node, {});
  if (!s.is_ok()) return s;
  if (node.attrs.has("axis"))
    return Status(StatusCode::kUnsupported,
                  fmt::format("{}: legacy broadcasting with attribute 'axis' (opset < 7) is not supported",
                              node.op_type));
  return check_arity(node, 2, 2);
}

Status infer_binary(InferContext& ctx) {
  const TensorDesc& a = ctx.inputs[0];
  const TensorDesc& b = ctx.inputs[1];
  if (a.dtype != b.dtype)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: inputs have different dtypes: {} and {}", ctx.node.op_type, dtype_name(a.dtype),
                              dtype_name(b.dtype)));
  auto out = broadcast_shapes(a.shape, b.shape);
  if (!out.is_ok()) return std::move(out).take_status();
  if (ctx.node.opset < 7) {
    auto bc = ctx.node.attrs.get_int("broadcast", 0);
    if (!bc.is_ok()) return bc.status();
    if ((*bc == 0 && a.shape != b.shape) || (*bc != 0 && *out != a.shape))
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{} (opset {}): shapes {} and {} are not compatible without numpy broadcasting",
                                ctx.node.op_type, ctx.node.opset, shape_str(a.shape), shape_str(b.shape)));
  }
  ctx.outputs[0] = {a.dtype, *out};
  return Status::ok();
}

template <BinaryOp Op>
void reference_loop(const RefTensor& A, const RefTensor& B, bool integer, RefTensor* Y) {
  const std::array<Dims, 2> strides{broadcast_strides(A.shape, Y->shape), broadcast_strides(B.shape, Y->shape)};
  for_each_strided(Y->shape, strides, [&](int64_t i, const std::array<int64_t, 2>& off) {
    const double a = A.data[off[0]], b = B.data[off[1]];
    double y = apply_binary<Op>(a, b);
    if (Op == BinaryOp::kDiv && integer) y = b == 0 ? 0 : std::trunc(a / b);
    Y->data[i] = y;
  });
}

Status reference_binary(RefContext& ctx) {
  const RefTensor& A = *ctx.inputs[0];
  const RefTensor& B = *ctx.inputs[1];
  auto out = broadcast_shapes(A.shape, B.shape);
  if (!out.is_ok()) return std::move(out).take_status();
  auto op = binary_op_from_type(ctx.node.op_type);
  if (!op.is_ok()) return op.status();
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = A.dtype;
  Y.shape = *out;
  Y.data.assign(static_cast<size_t>(volume(Y.shape)), 0.0);
  const bool integer = is_integer_dtype(A.dtype);
  switch (*op) {
    case BinaryOp::kAdd: reference_loop<BinaryOp::kAdd>(A, B, integer, &Y); break;
    case BinaryOp::kSub: reference_loop<BinaryOp::kSub>(A, B, integer, &Y); break;
    case BinaryOp::kMul: reference_loop<BinaryOp::kMul>(A, B, integer, &Y); break;
    case BinaryOp::kDiv: reference_loop<BinaryOp::kDiv>(A, B, integer, &Y); break;
  }
  return Status::ok();
}

const OpRegistrar kAdd{op_def("Add", check_binary, infer_binary, reference_binary)};
const OpRegistrar kSub{op_def("Sub", check_binary, infer_binary, reference_binary)};
const OpRegistrar kMul{op_def("Mul", check_binary, infer_binary, reference_binary)};
const OpRegistrar kDiv{op_def("Div", check_binary, infer_binary, reference_binary)};

}  // namespace
}  // namespace kiln
