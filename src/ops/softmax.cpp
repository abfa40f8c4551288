// Softmax (opset 1, 11, 13): see softmax.h for the two axis semantics.
#include "ops/softmax.h"

#include <cmath>

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<SoftmaxAttrs> SoftmaxAttrs::parse(const Node& node) {
  SoftmaxAttrs a;
  a.coerce_2d = node.opset < 13;
  auto axis = node.attrs.get_int("axis", a.coerce_2d ? 1 : -1);
  if (!axis.is_ok()) return axis.status();
  a.axis = *axis;
  return a;
}

Result<SoftmaxExtent> softmax_extent(const SoftmaxAttrs& attrs, const Dims& shape) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  int64_t axis = attrs.axis;
  if (attrs.coerce_2d) {
    // The 2-D coercion accepts axis == rank (everything in the outer dim).
    if (axis < -rank || axis > rank)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("Softmax: axis {} is out of range for input {}", axis, shape_str(shape)));
    if (axis < 0) axis += rank;
  } else {
    auto n = normalize_axis(axis, rank);
    if (!n.is_ok())
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("Softmax: axis {} is out of range for input {}", axis, shape_str(shape)));
    axis = *n;
  }
  SoftmaxExtent e;
  for (int64_t d = 0; d < axis; ++d) e.outer *= shape[d];
  if (attrs.coerce_2d) {
    for (int64_t d = axis; d < rank; ++d) e.len *= shape[d];
  } else {
    e.len = shape[axis];
    for (int64_t d = axis + 1; d < rank; ++d) e.inner *= shape[d];
  }
  return e;
}

namespace {

Status check_softmax(const Node& node) {
  Status s = check_attributes(node, {"axis"});
  if (!s.is_ok()) return s;
  auto a = SoftmaxAttrs::parse(node);
  if (!a.is_ok()) return a.status();
  return check_arity(node, 1, 1);
}

Status infer_softmax(InferContext& ctx) {
  auto a = SoftmaxAttrs::parse(ctx.node);
  if (!a.is_ok()) return a.status();
  auto e = softmax_extent(*a, ctx.inputs[0].shape);
  if (!e.is_ok()) return e.status();
  if (!is_float_dtype(ctx.inputs[0].dtype))
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("Softmax: input dtype {} is not a float type", dtype_name(ctx.inputs[0].dtype)));
  ctx.outputs[0] = ctx.inputs[0];
  return Status::ok();
}

Status reference_softmax(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  auto a = SoftmaxAttrs::parse(ctx.node);
  if (!a.is_ok()) return a.status();
  auto e = softmax_extent(*a, X.shape);
  if (!e.is_ok()) return e.status();
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = X.dtype;
  Y.shape = X.shape;
  Y.data.resize(X.data.size());
  for (int64_t o = 0; o < e->outer; ++o)
    for (int64_t in = 0; in < e->inner; ++in) {
      const int64_t base = o * e->len * e->inner + in;
      double mx = -INFINITY;
      for (int64_t l = 0; l < e->len; ++l) mx = std::max(mx, X.data[base + l * e->inner]);
      double sum = 0;
      for (int64_t l = 0; l < e->len; ++l) sum += std::exp(X.data[base + l * e->inner] - mx);
      for (int64_t l = 0; l < e->len; ++l)
        Y.data[base + l * e->inner] = std::exp(X.data[base + l * e->inner] - mx) / sum;
    }
  return Status::ok();
}

const OpRegistrar kSoftmax{op_def("Softmax", check_softmax, infer_softmax, reference_softmax)};

}  // namespace
}  // namespace kiln
