// kiln.QGemm: the INT8 GEMM (see ops/quantize.h for the formula). The INT8 builder pass produces it from
// Gemm/FusedGemm layers; its reference is the same quantized arithmetic in float64, so kernels are
// checked against exactly what they should compute (int32 accumulation is exact in float64).
#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"
#include "ops/quantize.h"

namespace kiln {

Result<QGemmAttrs> QGemmAttrs::parse(const Node& node) {
  QGemmAttrs a;
  auto as = node.attrs.get_float("a_scale", 0.f);
  auto ys = node.attrs.get_float("y_scale", 0.f);
  auto tb = node.attrs.get_int("transB", 0);
  auto act = node.attrs.get_string("activation", "");
  auto aa = node.attrs.get_float("activation_alpha", 0.01f);
  for (const Status* s : {&as.status(), &ys.status(), &tb.status(), &act.status(), &aa.status()})
    if (!s->is_ok()) return *s;
  if (!(*as > 0) || !std::isfinite(*as))
    return Status(StatusCode::kInvalidArgument, fmt::format("QGemm: a_scale must be finite and > 0, got {}", *as));
  if (!(*ys >= 0) || !std::isfinite(*ys))
    return Status(StatusCode::kInvalidArgument, fmt::format("QGemm: y_scale must be finite and >= 0, got {}", *ys));
  auto activation = activation_from_name(*act);
  if (!activation.is_ok()) return activation.status();
  a.a_scale = *as;
  a.y_scale = *ys;
  a.trans_b = *tb != 0;
  a.activation = *activation;
  a.activation_alpha = *aa;
  return a;
}

namespace {

Status check_qgemm(const Node& node) {
  Status s = check_attributes(node, {"a_scale", "y_scale", "transB", "activation", "activation_alpha"});
  if (!s.is_ok()) return s;
  auto at = QGemmAttrs::parse(node);
  if (!at.is_ok()) return at.status();
  s = check_arity(node, 2, 4);
  if (!s.is_ok()) return s;
  if (!has_node_input(node, 0) || !has_node_input(node, 1) || !has_node_input(node, 3))
    return Status(StatusCode::kInvalidArgument, "QGemm: A, W and w_scale are required");
  return Status::ok();
}

struct QGemmDims {
  int64_t m, k, n;
  Dims out;
};

Result<QGemmDims> qgemm_dims(const QGemmAttrs& at, const Dims& a, const Dims& w) {
  if (w.size() != 2 || a.empty())
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("QGemm: W must be 2-D and A at least 1-D, got A {} and W {}", shape_str(a), shape_str(w)));
  QGemmDims d;
  d.k = a.back();
  d.m = volume(Dims(a.begin(), a.end() - 1));
  d.n = at.trans_b ? w[0] : w[1];
  const int64_t kw = at.trans_b ? w[1] : w[0];
  if (kw != d.k)
    return Status(StatusCode::kInvalidArgument, fmt::format("QGemm: inner dimensions differ: A {} and W {} (transB={})",
                                                            shape_str(a), shape_str(w), at.trans_b));
  d.out.assign(a.begin(), a.end() - 1);
  d.out.push_back(d.n);
  return d;
}

Status infer_qgemm(InferContext& ctx) {
  auto at = QGemmAttrs::parse(ctx.node);
  if (!at.is_ok()) return at.status();
  if (ctx.inputs[0].dtype != DataType::kInt8 || ctx.inputs[1].dtype != DataType::kInt8)
    return Status(StatusCode::kInvalidArgument, fmt::format("QGemm: A and W must be int8, got {} and {}",
                                                            dtype_name(ctx.inputs[0].dtype), dtype_name(ctx.inputs[1].dtype)));
  auto d = qgemm_dims(*at, ctx.inputs[0].shape, ctx.inputs[1].shape);
  if (!d.is_ok()) return d.status();
  auto check_vector = [&](size_t i, const char* what) -> Status {
    if (!ctx.has_input(i)) return Status::ok();
    const TensorDesc& t = ctx.inputs[i];
    if (t.dtype != DataType::kFloat32 || t.shape.size() != 1 || (t.shape[0] != d->n && !(i == 3 && t.shape[0] == 1)))
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("QGemm: {} must be float32 [{}], got {} {}", what, d->n, dtype_name(t.dtype), shape_str(t.shape)));
    return Status::ok();
  };
  Status s = check_vector(2, "bias");
  if (!s.is_ok()) return s;
  s = check_vector(3, "w_scale");
  if (!s.is_ok()) return s;
  ctx.outputs[0] = {at->int8_output() ? DataType::kInt8 : DataType::kFloat32, d->out};
  return Status::ok();
}

Status reference_qgemm(RefContext& ctx) {
  auto at = QGemmAttrs::parse(ctx.node);
  if (!at.is_ok()) return at.status();
  const RefTensor& A = *ctx.inputs[0];
  const RefTensor& W = *ctx.inputs[1];
  const RefTensor* bias = ctx.inputs[2];
  const RefTensor& ws = *ctx.inputs[3];
  auto d = qgemm_dims(*at, A.shape, W.shape);
  if (!d.is_ok()) return d.status();
  const int64_t M = d->m, K = d->k, N = d->n;
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = at->int8_output() ? DataType::kInt8 : DataType::kFloat32;
  Y.shape = d->out;
  Y.data.assign(static_cast<size_t>(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += A.data[i * K + k] * W.data[at->trans_b ? j * K + k : k * N + j];
      double y = double{at->a_scale} * ws.data[ws.data.size() == 1 ? 0 : j] * acc + (bias ? bias->data[j] : 0.0);
      y = apply_activation(at->activation, y, at->activation_alpha);
      if (at->int8_output()) y = std::clamp(std::nearbyint(y / at->y_scale), -128.0, 127.0);
      Y.data[i * N + j] = y;
    }
  return Status::ok();
}

OpDef qgemm_def() {
  OpDef def;
  def.domain = "kiln";
  def.op_type = "QGemm";
  def.min_opset = 1;
  def.check = check_qgemm;
  def.infer = infer_qgemm;
  def.reference = reference_qgemm;
  return def;
}

const OpRegistrar kQGemm{qgemm_def()};

}  // namespace
}  // namespace kiln
