// MatMul (opset 1, 9, 13): numpy matmul semantics on any numeric dtype.
#include "ops/matmul.h"

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<MatMulShape> matmul_shape(const Dims& a, const Dims& b) {
  if (a.empty() || b.empty())
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("MatMul inputs must have rank >= 1, got A {} and B {}", shape_str(a), shape_str(b)));
  Dims a2 = a, b2 = b;
  if (a.size() == 1) a2.insert(a2.begin(), 1);
  if (b.size() == 1) b2.push_back(1);
  MatMulShape s;
  s.m = a2[a2.size() - 2];
  s.k = a2.back();
  s.n = b2.back();
  if (b2[b2.size() - 2] != s.k)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("MatMul inner dimensions differ: A {} and B {}", shape_str(a), shape_str(b)));
  Dims ab(a2.begin(), a2.end() - 2), bb(b2.begin(), b2.end() - 2);
  auto batch = broadcast_shapes(ab, bb);
  if (!batch.is_ok())
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("MatMul batch dimensions of A {} and B {} cannot be broadcast", shape_str(a),
                              shape_str(b)));
  s.batch = *batch;
  s.a_batch = ab;
  s.b_batch = bb;
  s.a_batch.insert(s.a_batch.begin(), s.batch.size() - ab.size(), 1);
  s.b_batch.insert(s.b_batch.begin(), s.batch.size() - bb.size(), 1);
  s.out = s.batch;
  if (a.size() > 1) s.out.push_back(s.m);
  if (b.size() > 1) s.out.push_back(s.n);
  return s;
}

namespace {

Status check_matmul(const Node& node) {
  Status s = check_attributes(node, {});
  if (!s.is_ok()) return s;
  return check_arity(node, 2, 2);
}

Status infer_matmul(InferContext& ctx) {
  if (ctx.inputs[0].dtype != ctx.inputs[1].dtype)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("MatMul inputs have different dtypes: {} and {}", dtype_name(ctx.inputs[0].dtype),
                              dtype_name(ctx.inputs[1].dtype)));
  auto s = matmul_shape(ctx.inputs[0].shape, ctx.inputs[1].shape);
  if (!s.is_ok()) return s.status();
  ctx.outputs[0] = {ctx.inputs[0].dtype, s->out};
  return Status::ok();
}

Status reference_matmul(RefContext& ctx) {
  const RefTensor& A = *ctx.inputs[0];
  const RefTensor& B = *ctx.inputs[1];
  auto s = matmul_shape(A.shape, B.shape);
  if (!s.is_ok()) return s.status();
  const int64_t M = s->m, K = s->k, N = s->n;
  const Dims as = broadcast_strides(s->a_batch, s->batch), bs = broadcast_strides(s->b_batch, s->batch);
  const Dims os = contiguous_strides(s->batch);
  const int64_t batches = volume(s->batch);
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = A.dtype;
  Y.shape = s->out;
  Y.data.assign(static_cast<size_t>(batches * M * N), 0.0);
  for (int64_t bi = 0; bi < batches; ++bi) {
    int64_t ao = 0, bo = 0;
    for (size_t d = 0; d < s->batch.size(); ++d) {
      const int64_t idx = (bi / os[d]) % s->batch[d];
      ao += idx * as[d];
      bo += idx * bs[d];
    }
    const double* a = A.data.data() + ao * M * K;
    const double* b = B.data.data() + bo * K * N;
    double* y = Y.data.data() + bi * M * N;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += a[i * K + k] * b[k * N + j];
        y[i * N + j] = acc;
      }
  }
  return Status::ok();
}

const OpRegistrar kMatMul{op_def("MatMul", check_matmul, infer_matmul, reference_matmul)};

}  // namespace
}  // namespace kiln
