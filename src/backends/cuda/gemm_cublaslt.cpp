// Gemm / kiln.FusedGemm on the GPU through cuBLASLt: Y = act(alpha * op(A) · op(B) + beta * C).
//   build (pack):  a constant B becomes [N,K] (transB = 1) so that cuBLASLt runs its "TN" form (both operands
//                  K-contiguous, see lt_matmul.h); a constant C that is the same for every row ([N], [1,N],
//                  scalar) becomes beta*C as an [N] bias of Y's dtype and beta = 1. The node stays a valid
//                  Gemm: transB/beta record the layout.
//   build (tune):  times cuBLASLt's candidates at the profile's opt shape, and at its min M when that is far
//                  below (lt_tune's bands), records the fastest of each.
//   reshape:       picks the C handling and the algorithm for the concrete M (nearest tuned band that checks).
//   enqueue:       one cublasLtMatmul; bias and ReLU ride in its epilogue (Gemm+bias+ReLU = one launch).
//                  A C that varies by row ([M,N], [M,1]), a runtime scalar, or C in another dtype is first
//                  broadcast into Y by a small kernel and accumulated with beta in the matmul (C = Y in place).
//                  LeakyRelu/Sigmoid/Tanh have no exact cuBLASLt epilogue: one elementwise kernel after it.
// dtypes: float32 (precision "fp32" -> CUBLAS_COMPUTE_32F, "tf32" -> CUBLAS_COMPUTE_32F_FAST_TF32), float16
// A/B with a float16 or float32 Y (compute 32F, float scale). C may be float32 or float16.
//
// cuBLASLt handle: one per kernel instance. A handle belongs to the device current at its creation and a
// kernel instance to one execution context (one device, one stream), so this is right with several GPUs
// or contexts without bookkeeping; cublasLtCreate allocates no device memory (the workspace is the
// context's), so the cost is small.
#include <cstring>

#include <fmt/format.h>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/gemm_elementwise.h"
#include "backends/cuda/lt_matmul.h"
#include "ops/float16.h"
#include "ops/gemm.h"

namespace kiln::cuda {
namespace {

constexpr const char* kF32Name = "cuda.f32.gemm.cublaslt";
constexpr const char* kF16Name = "cuda.f16.gemm.cublaslt";

bool is_float(DataType dt) { return dt == DataType::kFloat32 || dt == DataType::kFloat16; }

Result<bool> use_tf32(const Node& n, DataType in, const std::string& kernel) {
  if (in == DataType::kFloat32) {
    if (n.precision == "fp32") return false;
    if (n.precision == "tf32") return true;
    return Status(StatusCode::kUnsupported,
                  fmt::format("precision '{}' on float32 values is not supported by {} (fp32 or tf32; fp16 needs "
                              "float16 values)", n.precision, kernel));
  }
  // float16 values always accumulate in float32; the label only says how the model got there.
  if (n.precision == "fp16" || n.precision == "fp32" || n.precision == "tf32") return false;
  return Status(StatusCode::kUnsupported, fmt::format("precision '{}' is not supported by {}", n.precision, kernel));
}

Status supports(const Node& n, const Graph& g, DataType in, const std::string& kernel) {
  auto at = GemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  for (int i = 0; i < 2; ++i) {
    const Value& v = g.values[n.inputs[i]];
    if (v.dtype != in)
      return Status(StatusCode::kUnsupported, fmt::format("input '{}' is {}, {} runs {} A and B", v.name,
                                                          dtype_name(v.dtype), kernel, dtype_name(in)));
  }
  const Value& y = g.values[n.outputs[0]];
  if (y.dtype != in && !(in == DataType::kFloat16 && y.dtype == DataType::kFloat32))
    return Status(StatusCode::kUnsupported,
                  fmt::format("output '{}' is {}; {} writes {}{}", y.name, dtype_name(y.dtype), kernel, dtype_name(in),
                              in == DataType::kFloat16 ? " or float32" : ""));
  if (n.inputs.size() > 2 && n.inputs[2] != kNoValue && !is_float(g.values[n.inputs[2]].dtype))
    return Status(StatusCode::kUnsupported, fmt::format("C is {}, {} takes float32 or float16 C", 
                                                        dtype_name(g.values[n.inputs[2]].dtype), kernel));
  const Value& b = g.values[n.inputs[1]];
  if (b.rank_known && b.shape.size() != 2) return Status(StatusCode::kUnsupported, "B must be 2-D");
  auto tf32 = use_tf32(n, in, kernel);
  return tf32.is_ok() ? Status::ok() : tf32.status();
}

std::vector<uint8_t> encode(DataType dt, const std::vector<double>& v) {
  std::vector<uint8_t> out(v.size() * dtype_size(dt));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DataType::kFloat16) {
      const uint16_t h = double_to_half(v[i]);
      std::memcpy(&out[i * 2], &h, 2);
    } else {
      const float f = static_cast<float>(v[i]);
      std::memcpy(&out[i * 4], &f, 4);
    }
  }
  return out;
}

Status pack(Node& n, Graph& g) {
  auto at = GemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  const DataType out_dt = g.values[n.outputs[0]].dtype;
  int64_t N = -1;
  if (g.is_constant(n.inputs[1])) {
    Status s = pack_weights_nk(n, g);
    if (!s.is_ok()) return s;
    N = g.values[n.inputs[1]].constant->shape[0];  // now [N,K]
  } else if (const Value& b = g.values[n.inputs[1]]; b.rank_known && b.shape.size() == 2) {
    N = at->trans_b ? b.shape[0] : b.shape[1];  // may be -1 (dynamic): then C stays as it is
  }
  // A C that is the same for every row becomes the epilogue's bias: beta*C as [N] in Y's dtype.
  if (N > 0 && n.inputs.size() > 2 && g.is_constant(n.inputs[2]) && is_float(out_dt)) {
    const Tensor& c = *g.values[n.inputs[2]].constant;
    Dims cs = c.shape;
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    if (cs.size() == 2 && cs[0] == 1 && (cs[1] == N || cs[1] == 1)) {
      std::vector<double> bias(static_cast<size_t>(N));
      for (int64_t j = 0; j < N; ++j) bias[j] = static_cast<double>(at->beta) * c.get_double(cs[1] == 1 ? 0 : j);
      Value bv;
      bv.name = g.values[n.inputs[2]].name + "/packed_bias";
      bv.set_constant(Tensor::make(out_dt, {N}, encode(out_dt, bias)));
      n.inputs[2] = g.add_value(std::move(bv));
      n.attrs.set("beta", 1.f);
    }
  }
  return Status::ok();
}

enum class CMode { kNone, kBias, kBroadcast };

// Everything reshape decides for concrete shapes; shared with tune so both describe the same matmul.
struct GemmPlan {
  int64_t m = 0, n = 0, k = 0;
  CMode c_mode = CMode::kNone;
  DataType c_dtype = DataType::kUndefined;
  int64_t c_rs = 0, c_cs = 0;  // C's element strides over Y's rows/columns (0 = broadcast)
  LtProblem lt;
};

GemmPlan plan_gemm(const GemmAttrs& at, DataType out_dt, const std::vector<TensorDesc>& in) {
  GemmPlan p;
  const Dims& a = in[0].shape;
  const Dims& b = in[1].shape;
  p.k = at.trans_a ? a[0] : a.back();
  p.m = at.trans_a ? a[1] : volume(Dims(a.begin(), a.end() - 1));
  p.n = at.trans_b ? b[0] : b[1];
  if (in.size() > 2 && in[2].dtype != DataType::kUndefined && at.beta != 0.f) {
    Dims cs = in[2].shape;
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    p.c_dtype = in[2].dtype;
    p.c_rs = cs[0] == 1 ? 0 : cs[1];
    p.c_cs = cs[1] == 1 ? 0 : 1;
    // The bias epilogue adds an [N] vector of Y's dtype, unscaled.
    const bool row_vector = cs[0] == 1 && cs[1] == p.n;
    p.c_mode = row_vector && at.beta == 1.f && p.c_dtype == out_dt ? CMode::kBias : CMode::kBroadcast;
  }
  p.lt.m = p.m;
  p.lt.n = p.n;
  p.lt.k = p.k;
  p.lt.trans_x = at.trans_a;
  p.lt.trans_w = at.trans_b;
  p.lt.bias = p.c_mode == CMode::kBias;
  p.lt.accumulate = p.c_mode == CMode::kBroadcast;
  p.lt.relu = at.activation == Activation::kRelu;
  return p;
}

class GemmKernel final : public CudaKernel {
 public:
  GemmKernel(GemmAttrs at, DataType in, DataType out, std::unique_ptr<LtMatmul> lt, std::string context)
      : at_(at), in_(in), out_(out), lt_(std::move(lt)), context_(std::move(context)) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>&) override {
    plan_ = plan_gemm(at_, out_, inputs);
    if (plan_.m == 0 || plan_.n == 0 || plan_.k == 0) return Status::ok();  // no matmul: enqueue fills
    return lt_->select(plan_.lt);
  }

  size_t workspace_bytes() const override {
    return plan_.m > 0 && plan_.n > 0 && plan_.k > 0 ? lt_->workspace_bytes() : 0;
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) override {
    const int64_t m = plan_.m, n = plan_.n;
    if (m == 0 || n == 0) return Status::ok();
    void* y = outputs[0];
    const void* c = plan_.c_mode == CMode::kNone ? nullptr : inputs[2];
    if (plan_.k == 0) {  // an empty sum: Y = act(beta*C), or act(0)
      const float scale = plan_.c_mode == CMode::kBias ? 1.f : at_.beta;
      Status s = launch_broadcast_c(c, plan_.c_dtype, plan_.c_rs, plan_.c_cs, scale, y, out_, m, n, stream);
      if (!s.is_ok()) return with_context(s);
      return with_context(launch_activation(y, out_, m * n, at_.activation, at_.activation_alpha, stream));
    }
    if (plan_.c_mode == CMode::kBroadcast) {
      Status s = launch_broadcast_c(c, plan_.c_dtype, plan_.c_rs, plan_.c_cs, 1.f, y, out_, m, n, stream);
      if (!s.is_ok()) return with_context(s);
    }
    Status s = lt_->run(inputs[0], inputs[1], y, plan_.c_mode == CMode::kBias ? c : nullptr, at_.alpha, at_.beta,
                        workspace, stream);
    if (!s.is_ok()) return s;
    if (at_.activation != Activation::kNone && at_.activation != Activation::kRelu)
      return with_context(launch_activation(y, out_, m * n, at_.activation, at_.activation_alpha, stream));
    return Status::ok();
  }

 private:
  Status with_context(Status s) const {
    if (s.is_ok()) return s;
    return Status(s.code(), fmt::format("{} [{}x{}]x[{}x{}]: {}", context_, plan_.m, plan_.k, plan_.k, plan_.n,
                                        s.message()));
  }

  GemmAttrs at_;
  DataType in_, out_;
  std::unique_ptr<LtMatmul> lt_;
  std::string context_;
  GemmPlan plan_;
};

std::string layer_context(const Node& n, const std::string& kernel) {
  return fmt::format("layer '{}' ({})", n.name, kernel);
}

Status tune(Node& n, const Graph& g, const TuneContext& ctx, const std::string& kernel) {
  auto at = GemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  const DataType in = g.values[n.inputs[0]].dtype;
  const DataType out = ctx.out_opt.at(0).dtype;
  auto tf32 = use_tf32(n, in, kernel);
  if (!tf32.is_ok()) return tf32.status();
  const GemmPlan opt = plan_gemm(*at, out, ctx.in_opt);
  if (opt.m == 0 || opt.n == 0 || opt.k == 0) return Status::ok();  // nothing to time
  GemmPlan lo = plan_gemm(*at, out, ctx.in_min), hi = plan_gemm(*at, out, ctx.in_max);
  // Empty or differently shaped extremes (M = 0 at min) are checked as the opt problem.
  auto usable = [&](const GemmPlan& p) { return p.m > 0 && p.n > 0 && p.k > 0 && p.lt.bias == opt.lt.bias &&
                                                p.lt.accumulate == opt.lt.accumulate; };
  const LtTypes types{in, out, *tf32};
  auto t = lt_tune(types, opt.lt, usable(lo) ? lo.lt : opt.lt, usable(hi) ? hi.lt : opt.lt, at->alpha, at->beta, ctx,
                   kernel, n.precision, layer_context(n, kernel));
  if (!t.is_ok()) return t.status();
  write_tactic(n, *t);
  return Status::ok();
}

Result<std::unique_ptr<CudaKernel>> create(const KernelInit& init, const std::string& kernel) {
  auto at = GemmAttrs::parse(init.node);
  if (!at.is_ok()) return at.status();
  const DataType in = init.graph.values[init.node.inputs[0]].dtype;
  const DataType out = init.graph.values[init.node.outputs[0]].dtype;
  auto tf32 = use_tf32(init.node, in, kernel);
  if (!tf32.is_ok()) return tf32.status();
  auto tuned = read_tactic(init.node);
  if (!tuned.is_ok()) return tuned.status();
  const std::string context = layer_context(init.node, kernel);
  auto lt = LtMatmul::create(LtTypes{in, out, *tf32}, *tuned, context);
  if (!lt.is_ok()) return lt.status();
  return std::unique_ptr<CudaKernel>(std::make_unique<GemmKernel>(*at, in, out, std::move(*lt), context));
}

KernelDef gemm_def(const std::string& domain, const std::string& op, DataType in, const std::string& name) {
  KernelDef d;
  d.name = name;
  d.domain = domain;
  d.op_type = op;
  d.priority = 10;
  d.supports = [in, name](const Node& n, const Graph& g) { return supports(n, g, in, name); };
  d.pack = pack;
  d.tune = [name](Node& n, const Graph& g, const TuneContext& ctx) { return tune(n, g, ctx, name); };
  d.create = [name](const KernelInit& init) { return create(init, name); };
  return d;
}

const KernelRegistrar kGemmF32{gemm_def("", "Gemm", DataType::kFloat32, kF32Name)};
const KernelRegistrar kGemmF16{gemm_def("", "Gemm", DataType::kFloat16, kF16Name)};
const KernelRegistrar kFusedGemmF32{gemm_def("kiln", "FusedGemm", DataType::kFloat32, std::string(kF32Name) + ".fused")};
const KernelRegistrar kFusedGemmF16{gemm_def("kiln", "FusedGemm", DataType::kFloat16, std::string(kF16Name) + ".fused")};

}  // namespace
}  // namespace kiln::cuda
