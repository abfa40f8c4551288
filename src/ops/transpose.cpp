// Transpose (opset 1, 13, 21): out[i0..in] = in[index permuted by perm].
#include "ops/transpose.h"

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<std::optional<std::vector<int64_t>>> perm_attribute(const Node& node) {
  if (!node.attrs.has("perm")) return std::optional<std::vector<int64_t>>();
  auto perm = node.attrs.get_ints("perm", {});
  if (!perm.is_ok()) return perm.status();
  return std::optional<std::vector<int64_t>>(std::move(perm).value());
}

Result<std::vector<int64_t>> transpose_perm(const Node& node, size_t rank) {
  auto attr = perm_attribute(node);
  if (!attr.is_ok()) return attr.status();
  return resolve_perm(*attr, rank);
}

Result<std::vector<int64_t>> resolve_perm(const std::optional<std::vector<int64_t>>& attr, size_t rank) {
  std::vector<int64_t> perm(rank);
  for (size_t i = 0; i < rank; ++i) perm[i] = static_cast<int64_t>(rank - 1 - i);
  if (attr) perm = *attr;
  std::vector<char> seen(rank, 0);
  bool ok = perm.size() == rank;
  for (int64_t p : perm) {
    if (!ok) break;
    ok = p >= 0 && p < static_cast<int64_t>(rank) && !seen[p];
    if (ok) seen[p] = 1;
  }
  if (!ok)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("Transpose: perm {} is not a permutation of {} dims", shape_str(perm), rank));
  return perm;
}

Dims permute_dims(const Dims& in, const std::vector<int64_t>& perm) {
  Dims out(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) out[i] = in[perm[i]];
  return out;
}

namespace {

Status check_transpose(const Node& node) {
  Status s = check_attributes(node, {"perm"});
  if (!s.is_ok()) return s;
  auto perm = node.attrs.get_ints("perm", {});
  if (!perm.is_ok()) return perm.status();
  return check_arity(node, 1, 1);
}

Status infer_transpose(InferContext& ctx) {
  auto perm = transpose_perm(ctx.node, ctx.inputs[0].shape.size());
  if (!perm.is_ok()) return perm.status();
  ctx.outputs[0] = {ctx.inputs[0].dtype, permute_dims(ctx.inputs[0].shape, *perm)};
  return Status::ok();
}

Status reference_transpose(RefContext& ctx) {
  const RefTensor& X = *ctx.inputs[0];
  auto perm = transpose_perm(ctx.node, X.shape.size());
  if (!perm.is_ok()) return perm.status();
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = X.dtype;
  Y.shape = permute_dims(X.shape, *perm);
  Y.data.resize(X.data.size());
  // Walk the output in order; the input offset advances by the input stride of the permuted dim.
  const Dims in_strides = contiguous_strides(X.shape);
  std::array<Dims, 1> strides{permute_dims(in_strides, *perm)};
  for_each_strided(Y.shape, strides, [&](int64_t i, const std::array<int64_t, 1>& off) { Y.data[i] = X.data[off[0]]; });
  return Status::ok();
}

const OpRegistrar kTranspose{op_def("Transpose", check_transpose, infer_transpose, reference_transpose)};

}  // namespace
}  // namespace kiln
