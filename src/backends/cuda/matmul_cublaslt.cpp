// MatMul (numpy semantics) on the GPU through cuBLASLt. Batch dims that broadcast alike are merged (as in
// the CPU kernel), then:
//   - B without batch (2-D B, or batch dims all 1): the batch folds into M, one plain GEMM
//     ([batch*M, K] x [K, N]; A and Y are contiguous, so this is exact);
//   - one merged batch dim: one strided-batched GEMM, stride 0 for the operand that broadcasts;
//   - several merged dims with different broadcast patterns: one strided-batched GEMM per outer index
//     (offsets precomputed at reshape).
// A is cuBLASLt's B and B its A in the column-major mapping (lt_matmul.h); no packing: B keeps its [K,N]
// layout because the runtime re-infers MatMul shapes from it ("NN" form, which cuBLASLt handles well).
// dtypes/precision as the GEMM: float32 with fp32/tf32, float16 in with float16 or float32 out.
#include <array>

#include <fmt/format.h>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/lt_matmul.h"
#include "ops/matmul.h"
#include "ops/op_util.h"

namespace kiln::cuda {
namespace {

constexpr const char* kF32Name = "cuda.f32.matmul.cublaslt";
constexpr const char* kF16Name = "cuda.f16.matmul.cublaslt";

Result<bool> use_tf32(const Node& n, DataType in, const std::string& kernel) {
  if (in == DataType::kFloat32) {
    if (n.precision == "fp32") return false;
    if (n.precision == "tf32") return true;
  } else if (n.precision == "fp16" || n.precision == "fp32" || n.precision == "tf32") {
    return false;  // float16 values accumulate in float32 whatever the label
  }
  return Status(StatusCode::kUnsupported, fmt::format("precision '{}' on {} values is not supported by {}",
                                                      n.precision, dtype_name(in), kernel));
}

Status supports(const Node& n, const Graph& g, DataType in, const std::string& kernel) {
  for (int i = 0; i < 2; ++i) {
    const Value& v = g.values[n.inputs[i]];
    if (v.dtype != in)
      return Status(StatusCode::kUnsupported,
                    fmt::format("input '{}' is {}, {} runs {} inputs", v.name, dtype_name(v.dtype), kernel, dtype_name(in)));
  }
  const Value& y = g.values[n.outputs[0]];
  if (y.dtype != in && !(in == DataType::kFloat16 && y.dtype == DataType::kFloat32))
    return Status(StatusCode::kUnsupported, fmt::format("output '{}' is {}, {} writes {}{}", y.name,
                                                        dtype_name(y.dtype), kernel, dtype_name(in),
                                                        in == DataType::kFloat16 ? " or float32" : ""));
  auto tf32 = use_tf32(n, in, kernel);
  return tf32.is_ok() ? Status::ok() : tf32.status();
}

struct MatMulPlan {
  int64_t out_elements = 0;
  bool zero_k = false;
  LtProblem lt;
  std::vector<std::array<int64_t, 3>> launches;  // element offsets of A, B, Y per launch
};

Result<MatMulPlan> plan_matmul(const Dims& a, const Dims& b) {
  auto s = matmul_shape(a, b);
  if (!s.is_ok()) return s.status();
  MatMulPlan p;
  p.out_elements = volume(s->out);
  p.zero_k = s->k == 0;
  const int64_t M = s->m, K = s->k, N = s->n;
  p.lt.m = M;
  p.lt.n = N;
  p.lt.k = K;
  if (p.out_elements == 0 || p.zero_k) return p;
  // Merge batch dims that broadcast alike (as the CPU kernel does); drop unit dims.
  Dims out, ab, bb;
  for (size_t d = 0; d < s->batch.size(); ++d) {
    if (s->batch[d] == 1) continue;
    const bool a_bc = s->a_batch[d] == 1, b_bc = s->b_batch[d] == 1;
    if (!out.empty() && (ab.back() == 1) == a_bc && (bb.back() == 1) == b_bc) {
      out.back() *= s->batch[d];
      if (!a_bc) ab.back() *= s->batch[d];
      if (!b_bc) bb.back() *= s->batch[d];
      continue;
    }
    out.push_back(s->batch[d]);
    ab.push_back(a_bc ? 1 : s->batch[d]);
    bb.push_back(b_bc ? 1 : s->batch[d]);
  }
  bool b_batched = false;
  for (int64_t v : bb) b_batched = b_batched || v != 1;
  if (!b_batched) {  // B is shared by every batch (then A has every batch): fold the batch into M
    p.lt.m = M * volume(out);
    p.launches.push_back({0, 0, 0});
    return p;
  }
  // Innermost merged dim: strided batch; outer dims: one launch each.
  p.lt.batch = out.back();
  p.lt.stride_x = ab.back() == 1 ? 0 : M * K;
  p.lt.stride_w = bb.back() == 1 ? 0 : K * N;
  p.lt.stride_y = M * N;
  const Dims outer(out.begin(), out.end() - 1);
  // Strides in matrices: A's and B's own dims (0 where they broadcast), Y contiguous.
  const Dims as = contiguous_strides(ab), bs = contiguous_strides(bb), ys = contiguous_strides(out);
  const int64_t launches = volume(outer);
  for (int64_t i = 0; i < launches; ++i) {
    int64_t rem = i, ao = 0, bo = 0, yo = 0;
    for (size_t d = outer.size(); d-- > 0;) {
      const int64_t idx = rem % outer[d];
      rem /= outer[d];
      if (ab[d] != 1) ao += idx * as[d];
      if (bb[d] != 1) bo += idx * bs[d];
      yo += idx * ys[d];
    }
    p.launches.push_back({ao * M * K, bo * K * N, yo * M * N});
  }
  return p;
}

class MatMulKernel final : public CudaKernel {
 public:
  MatMulKernel(DataType in, DataType out, std::unique_ptr<LtMatmul> lt, std::string context)
      : in_size_(dtype_size(in)), out_size_(dtype_size(out)), lt_(std::move(lt)), context_(std::move(context)) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>&) override {
    auto p = plan_matmul(inputs[0].shape, inputs[1].shape);
    if (!p.is_ok()) return Status(p.status()).with_context(context_);
    plan_ = std::move(*p);
    if (plan_.launches.empty()) return Status::ok();
    return lt_->select(plan_.lt);
  }

  size_t workspace_bytes() const override { return plan_.launches.empty() ? 0 : lt_->workspace_bytes(); }

  Status enqueue(const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) override {
    if (plan_.out_elements == 0) return Status::ok();
    if (plan_.zero_k)  // an empty sum is 0 (all-zero bits are 0.0 in float32 and float16)
      return check(cudaMemsetAsync(outputs[0], 0, static_cast<size_t>(plan_.out_elements) * out_size_, stream),
                   context_ + ": zeroing the K = 0 product");
    const auto* a = static_cast<const uint8_t*>(inputs[0]);
    const auto* b = static_cast<const uint8_t*>(inputs[1]);
    auto* y = static_cast<uint8_t*>(outputs[0]);
    for (const auto& [ao, bo, yo] : plan_.launches) {
      Status s = lt_->run(a + ao * in_size_, b + bo * in_size_, y + yo * out_size_, nullptr, 1.f, 0.f, workspace, stream);
      if (!s.is_ok()) return s;
    }
    return Status::ok();
  }

 private:
  size_t in_size_, out_size_;
  std::unique_ptr<LtMatmul> lt_;
  std::string context_;
  MatMulPlan plan_;
};

std::string layer_context(const Node& n, const std::string& kernel) {
  return fmt::format("layer '{}' ({})", n.name, kernel);
}

Status tune(Node& n, const Graph& g, const TuneContext& ctx, const std::string& kernel) {
  const DataType in = g.values[n.inputs[0]].dtype;
  const DataType out = ctx.out_opt.at(0).dtype;
  auto tf32 = use_tf32(n, in, kernel);
  if (!tf32.is_ok()) return tf32.status();
  const std::string context = layer_context(n, kernel);
  auto opt = plan_matmul(ctx.in_opt.at(0).shape, ctx.in_opt.at(1).shape);
  if (!opt.is_ok()) return Status(opt.status()).with_context(context);
  if (opt->launches.empty()) return Status::ok();  // nothing to time
  auto lo = plan_matmul(ctx.in_min.at(0).shape, ctx.in_min.at(1).shape);
  auto hi = plan_matmul(ctx.in_max.at(0).shape, ctx.in_max.at(1).shape);
  auto extreme = [&](const Result<MatMulPlan>& p) {
    return p.is_ok() && !p->launches.empty() ? p->lt : opt->lt;
  };
  auto t = lt_tune(LtTypes{in, out, *tf32}, opt->lt, extreme(lo), extreme(hi), 1.f, 0.f, ctx, kernel, n.precision,
                   context);
  if (!t.is_ok()) return t.status();
  write_tactic(n, *t);
  return Status::ok();
}

Result<std::unique_ptr<CudaKernel>> create(const KernelInit& init, const std::string& kernel) {
  const DataType in = init.graph.values[init.node.inputs[0]].dtype;
  const DataType out = init.graph.values[init.node.outputs[0]].dtype;
  auto tf32 = use_tf32(init.node, in, kernel);
  if (!tf32.is_ok()) return tf32.status();
  auto tuned = read_tactic(init.node);
  if (!tuned.is_ok()) return tuned.status();
  const std::string context = layer_context(init.node, kernel);
  auto lt = LtMatmul::create(LtTypes{in, out, *tf32}, *tuned, context);
  if (!lt.is_ok()) return lt.status();
  return std::unique_ptr<CudaKernel>(std::make_unique<MatMulKernel>(in, out, std::move(*lt), context));
}

KernelDef matmul_def(DataType in, const std::string& name) {
  KernelDef d;
  d.name = name;
  d.op_type = "MatMul";
  d.priority = 10;
  d.supports = [in, name](const Node& n, const Graph& g) { return supports(n, g, in, name); };
  d.tune = [name](Node& n, const Graph& g, const TuneContext& ctx) { return tune(n, g, ctx, name); };
  d.create = [name](const KernelInit& init) { return create(init, name); };
  return d;
}

const KernelRegistrar kMatMulF32{matmul_def(DataType::kFloat32, kF32Name)};
const KernelRegistrar kMatMulF16{matmul_def(DataType::kFloat16, kF16Name)};

}  // namespace
}  // namespace kiln::cuda
