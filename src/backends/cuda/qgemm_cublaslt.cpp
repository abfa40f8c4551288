// kiln.QGemm through cuBLASLt's INT8 tensor-core (IMMA) matmul: acc = A · W in int32, then one epilogue
// kernel (qgemm.cu) for act(a_scale * w_scale[n] * acc + bias[n]) and the int8 requantization or float32
// store, so every output rounds exactly as the reference's formula says.
//   build (pack):  a constant W becomes [N,K] with transB = 1: IMMA needs the "TN" form (lt_matmul.h).
//   build (tune):  times cuBLASLt's candidates at the profile's opt shape, and at its min M when that is far
//                  below (lt_tune's bands), records the fastest of each.
//   reshape:       the algorithm for the concrete M (nearest tuned band); workspace = int32 accumulator
//                  [M,N] + cuBLASLt's.
//   enqueue:       cublasLtMatmul (int8 x int8 -> int32, CUBLAS_COMPUTE_32I, alpha 1, beta 0) into the
//                  workspace, then the epilogue. Pointers IMMA cannot take (less than 4-byte aligned) run
//                  the tiled kernel instead, decided per launch.
// supports() refuses K or N not a multiple of 4 (IMMA's leading-dimension rule) and runtime W stored [K,N];
// cuda.int8.qgemm.tiled runs those.
//
// cuBLASLt's int8 output mode (alpha as a per-channel device vector, beta 0) would save the int32 round
// trip, but it scales and rounds inside the library (bias before or after the scale, its own rounding) and
// has no Sigmoid/Tanh; kept out until it can be shown to compute this formula.
#include <fmt/format.h>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/lt_matmul.h"
#include "backends/cuda/qgemm.h"
#include "ops/quantize.h"

namespace kiln::cuda {
namespace {

constexpr const char* kName = "cuda.int8.qgemm.cublaslt";
const LtTypes kTypes{DataType::kInt8, DataType::kInt32, false};
constexpr size_t kAccAlignment = 256;  // cuBLASLt's workspace follows the accumulator

std::string layer_context(const Node& n) { return fmt::format("layer '{}' ({})", n.name, kName); }

Status supports(const Node& n, const Graph& g) {
  auto at = QGemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  if (g.values[n.inputs[0]].dtype != DataType::kInt8)
    return Status(StatusCode::kUnsupported, fmt::format("{} takes int8 A", kName));
  const Value& w = g.values[n.inputs[1]];
  if (!w.rank_known || w.shape.size() != 2 || w.shape[0] < 0 || w.shape[1] < 0)
    return Status(StatusCode::kUnsupported, fmt::format("{} needs W's 2-D shape at build time", kName));
  if (!g.is_constant(n.inputs[1]) && !at->trans_b)
    return Status(StatusCode::kUnsupported,
                  fmt::format("{} needs W as [N,K] (transB=1) or constant (packed so); {} runs it", kName, kQGemmTiledName));
  const int64_t N = at->trans_b ? w.shape[0] : w.shape[1], K = at->trans_b ? w.shape[1] : w.shape[0];
  if (K <= 0 || N <= 0 || K % 4 != 0 || N % 4 != 0)
    return Status(StatusCode::kUnsupported,
                  fmt::format("{} needs K and N to be positive multiples of 4 (cuBLASLt's int8 kernels), got K={} "
                              "N={}; {} runs it", kName, K, N, kQGemmTiledName));
  return Status::ok();
}

struct QGemmShape {
  int64_t m = 0, n = 0, k = 0;
  LtProblem lt;
  bool empty() const { return m <= 0 || n <= 0 || k <= 0; }
};

// After pack W is [N,K] (transB = 1): cuBLASLt's A is W read as K x N with op T, B is A [M,K] as K x M.
QGemmShape plan_qgemm(const std::vector<TensorDesc>& in) {
  QGemmShape p;
  const Dims& a = in[0].shape;
  p.k = a.back();
  p.m = volume(Dims(a.begin(), a.end() - 1));
  p.n = in[1].shape[0];
  p.lt.m = p.m;
  p.lt.n = p.n;
  p.lt.k = p.k;
  p.lt.trans_w = true;
  return p;
}

size_t acc_bytes(const QGemmShape& p) {
  const size_t bytes = static_cast<size_t>(p.m * p.n) * sizeof(int32_t);
  return (bytes + kAccAlignment - 1) / kAccAlignment * kAccAlignment;
}

class QGemmLtKernel final : public CudaKernel {
 public:
  QGemmLtKernel(const QGemmAttrs& at, std::unique_ptr<LtMatmul> lt, std::string context)
      : at_(at), lt_(std::move(lt)), context_(std::move(context)) {}

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>&) override {
    shape_ = plan_qgemm(in);
    w_scale_stride_ = volume(in[3].shape) == 1 ? 0 : 1;
    return shape_.empty() ? Status::ok() : lt_->select(shape_.lt);
  }

  size_t workspace_bytes() const override { return shape_.empty() ? 0 : acc_bytes(shape_) + lt_->workspace_bytes(); }

  Status enqueue(const void* const* in, void* const* out, void* workspace, cudaStream_t stream) override {
    const QGemmEpilogue e{at_.a_scale, at_.y_scale, static_cast<const float*>(in[3]), w_scale_stride_,
                          static_cast<const float*>(in[2]), at_.activation, at_.activation_alpha};
    const auto* a = static_cast<const int8_t*>(in[0]);
    const auto* w = static_cast<const int8_t*>(in[1]);
    auto* acc = static_cast<int32_t*>(workspace);
    if (shape_.empty() || !lt_->accepts(a, w, acc, nullptr))  // empty, or pointers IMMA cannot take
      return with_context(launch_qgemm_tiled(a, w, /*trans_b=*/true, shape_.m, shape_.n, shape_.k, e, out[0], stream));
    Status s = lt_->run(a, w, acc, nullptr, 1.f, 0.f, static_cast<uint8_t*>(workspace) + acc_bytes(shape_), stream);
    if (!s.is_ok()) return s;
    return with_context(launch_qgemm_epilogue(acc, shape_.m, shape_.n, e, out[0], stream));
  }

 private:
  Status with_context(Status s) const {
    if (s.is_ok()) return s;
    return Status(s.code(), fmt::format("{} [{}x{}]x[{}x{}]: {}", context_, shape_.m, shape_.k, shape_.k, shape_.n,
                                        s.message()));
  }

  QGemmAttrs at_;
  std::unique_ptr<LtMatmul> lt_;
  std::string context_;
  QGemmShape shape_;
  int64_t w_scale_stride_ = 1;
};

Status tune(Node& n, const Graph&, const TuneContext& ctx) {
  const QGemmShape opt = plan_qgemm(ctx.in_opt);
  if (opt.empty()) return Status::ok();  // nothing to time
  const QGemmShape lo = plan_qgemm(ctx.in_min), hi = plan_qgemm(ctx.in_max);
  auto t = lt_tune(kTypes, opt.lt, lo.empty() ? opt.lt : lo.lt, hi.empty() ? opt.lt : hi.lt, 1.f, 0.f, ctx, kName,
                   n.precision, layer_context(n));
  if (!t.is_ok()) return t.status();
  write_tactic(n, *t);
  return Status::ok();
}

Result<std::unique_ptr<CudaKernel>> create(const KernelInit& init) {
  auto at = QGemmAttrs::parse(init.node);
  if (!at.is_ok()) return at.status();
  if (!at->trans_b)
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: W must be packed as [N,K] (transB=1)",
                                                            layer_context(init.node)));
  auto tuned = read_tactic(init.node);
  if (!tuned.is_ok()) return tuned.status();
  auto lt = LtMatmul::create(kTypes, *tuned, layer_context(init.node));
  if (!lt.is_ok()) return lt.status();
  return std::unique_ptr<CudaKernel>(std::make_unique<QGemmLtKernel>(*at, std::move(*lt), layer_context(init.node)));
}

KernelDef qgemm_def() {
  KernelDef d;
  d.name = kName;
  d.domain = "kiln";
  d.op_type = "QGemm";
  d.priority = 10;
  d.supports = supports;
  d.pack = pack_weights_nk;
  d.tune = tune;
  d.create = create;
  return d;
}

const KernelRegistrar kQGemm{qgemm_def()};

}  // namespace
}  // namespace kiln::cuda
