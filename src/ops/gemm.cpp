#include "ops/gemm.h"

#include <cmath>

#include <fmt/format.h>

#include "ops/op.h"
#include "ops/op_util.h"

namespace kiln {

Result<Activation> activation_from_name(const std::string& name) {
  if (name.empty()) return Activation::kNone;
  if (name == "Relu") return Activation::kRelu;
  if (name == "LeakyRelu") return Activation::kLeakyRelu;
  if (name == "Sigmoid") return Activation::kSigmoid;
  if (name == "Tanh") return Activation::kTanh;
  return Status(StatusCode::kUnsupported, "unknown fused activation '" + name + "'");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::kNone: return "";
    case Activation::kRelu: return "Relu";
    case Activation::kLeakyRelu: return "LeakyRelu";
    case Activation::kSigmoid: return "Sigmoid";
    case Activation::kTanh: return "Tanh";
  }
  return "";
}

double apply_activation(Activation a, double x, double alpha) {
  switch (a) {
    case Activation::kNone: return x;
    case Activation::kRelu: return x > 0 ? x : 0;
    case Activation::kLeakyRelu: return x >= 0 ? x : alpha * x;
    case Activation::kSigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Activation::kTanh: return std::tanh(x);
  }
  return x;
}

Result<GemmAttrs> GemmAttrs::parse(const Node& node) {
  GemmAttrs a;
  auto ta = node.attrs.get_int("transA", 0);
  auto tb = node.attrs.get_int("transB", 0);
  auto al = node.attrs.get_float("alpha", 1.f);
  auto be = node.attrs.get_float("beta", 1.f);
  auto act = node.attrs.get_string("activation", "");
  auto aa = node.attrs.get_float("activation_alpha", 0.01f);
  for (const Status* s : {&ta.status(), &tb.status(), &al.status(), &be.status(), &act.status(), &aa.status()})
    if (!s->is_ok()) return *s;
  a.trans_a = *ta != 0;
  a.trans_b = *tb != 0;
  a.alpha = *al;
  a.beta = *be;
  auto activation = activation_from_name(*act);
  if (!activation.is_ok()) return activation.status();
  a.activation = *activation;
  a.activation_alpha = *aa;
  return a;
}

namespace {

bool is_fused(const Node& n) { return n.domain == "kiln"; }

Status check_gemm(const Node& node) {
  // `broadcast` (opset < 7) only told older runtimes that C broadcasts, which Kiln always allows.
  Status known = is_fused(node) ? check_attributes(node, {"transA", "transB", "alpha", "beta", "activation",
                                                          "activation_alpha"})
                 : node.opset < 7 ? check_attributes(node, {"transA", "transB", "alpha", "beta", "broadcast"})
                                  : check_attributes(node, {"transA", "transB", "alpha", "beta"});
  if (!known.is_ok()) return known;
  auto attrs = GemmAttrs::parse(node);
  if (!attrs.is_ok()) return attrs.status();
  Status arity = check_arity(node, 2, 3);
  if (!arity.is_ok()) return arity;
  if (node.opset < 11 && !is_fused(node) && !has_node_input(node, 2))
    return Status(StatusCode::kInvalidArgument, "input C is required before opset 11");
  return Status::ok();
}

// M, K, N and output shape for concrete A/B shapes.
struct GemmDims {
  int64_t m, k, n;
  Dims out;
};

Result<GemmDims> gemm_dims(const Node& node, const GemmAttrs& at, const Dims& a, const Dims& b) {
  if (b.size() != 2)
    return Status(StatusCode::kInvalidArgument, fmt::format("B must be 2-D, got [{}]", dims_to_string(a, ",")));
  const bool fused = is_fused(node);
  if (a.size() != 2 && !(fused && a.size() > 2 && !at.trans_a))
    return Status(StatusCode::kInvalidArgument, fmt::format("A must be 2-D, got [{}]", dims_to_string(a, ",")));
  GemmDims d;
  if (a.size() == 2) {
    d.m = at.trans_a ? a[1] : a[0];
    d.k = at.trans_a ? a[0] : a[1];
    d.out = {d.m};
  } else {
    d.k = a.back();
    d.m = 1;
    for (size_t i = 0; i + 1 < a.size(); ++i) d.m *= a[i];
    d.out.assign(a.begin(), a.end() - 1);
  }
  const int64_t kb = at.trans_b ? b[1] : b[0];
  d.n = at.trans_b ? b[0] : b[1];
  if (kb != d.k)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("inner dimensions differ: A [{}] and B [{}] (transA={}, transB={})",
                              dims_to_string(a, ","), dims_to_string(b, ","), at.trans_a, at.trans_b));
  d.out.push_back(d.n);
  return d;
}

Status infer_gemm(InferContext& ctx) {
  auto at = GemmAttrs::parse(ctx.node);
  if (!at.is_ok()) return at.status();
  auto d = gemm_dims(ctx.node, *at, ctx.inputs[0].shape, ctx.inputs[1].shape);
  if (!d.is_ok()) return d.status();
  if (ctx.inputs[0].dtype != ctx.inputs[1].dtype)
    return Status(StatusCode::kInvalidArgument, "A and B have different dtypes");
  if (ctx.has_input(2)) {
    auto bc = broadcast_shapes(Dims{d->m, d->n}, ctx.inputs[2].shape);
    if (!bc.is_ok() || *bc != Dims{d->m, d->n})
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("C [{}] does not broadcast to [{}x{}]", dims_to_string(ctx.inputs[2].shape, ","),
                                d->m, d->n));
  }
  ctx.outputs[0] = {ctx.inputs[0].dtype, d->out};
  return Status::ok();
}

Status reference_gemm(RefContext& ctx) {
  auto at = GemmAttrs::parse(ctx.node);
  if (!at.is_ok()) return at.status();
  const RefTensor& A = *ctx.inputs[0];
  const RefTensor& B = *ctx.inputs[1];
  const RefTensor* C = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
  auto d = gemm_dims(ctx.node, *at, A.shape, B.shape);
  if (!d.is_ok()) return d.status();
  const int64_t M = d->m, K = d->k, N = d->n;
  RefTensor& Y = ctx.outputs[0];
  Y.dtype = A.dtype;
  Y.shape = d->out;
  Y.data.assign(static_cast<size_t>(M * N), 0.0);
  // C broadcast to [M, N] via its own (possibly lower-rank) shape.
  Dims cs;
  if (C) cs = C->shape;
  while (cs.size() < 2) cs.insert(cs.begin(), 1);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        double a = at->trans_a ? A.data[k * M + i] : A.data[i * K + k];
        double b = at->trans_b ? B.data[j * K + k] : B.data[k * N + j];
        acc += a * b;
      }
      double y = at->alpha * acc;
      if (C) y += at->beta * C->data[(cs[0] == 1 ? 0 : i) * cs[1] + (cs[1] == 1 ? 0 : j)];
      Y.data[i * N + j] = apply_activation(at->activation, y, at->activation_alpha);
    }
  }
  return Status::ok();
}

OpDef gemm_def(std::string domain, std::string op_type) {
  OpDef def;
  def.domain = std::move(domain);
  def.op_type = std::move(op_type);
  def.min_opset = 1;
  def.check = check_gemm;
  def.infer = infer_gemm;
  def.reference = reference_gemm;
  return def;
}

const OpRegistrar kGemm{gemm_def("", "Gemm")};
const OpRegistrar kFusedGemm{gemm_def("kiln", "FusedGemm")};

}  // namespace
}  // namespace kiln
