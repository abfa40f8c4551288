// Gemm / kiln.FusedGemm on float32 and kiln.QGemm on int8 through oneDNN's matmul primitive, with bias,
// activation and (INT8) the per-channel rescale and requantization fused into the primitive (one call per
// layer; oneDNN uses AVX-512 VNNI or AMX for int8 where the CPU has them).
//   build (pack):   B -> alpha*op(B) as a [K,N] matrix, C -> beta*C as a [N] bias when it broadcasts so;
//                   the node becomes transB=0, alpha=1, beta=1 (same function, kernel-ready layout).
//   reshape, run:   onednn_gemm.{h,cpp} (one matmul primitive per layer, shared with kiln.FusedMLP).
#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/onednn_gemm.h"
#include "ops/gemm.h"
#include "ops/quantize.h"

namespace kiln::cpu {
namespace {

using dnnl::memory;

constexpr const char* kKernelName = "cpu.f32.gemm.onednn";
constexpr const char* kQGemmName = "cpu.int8.qgemm.onednn";

bool is_f32(const Graph& g, int v) { return v == kNoValue || g.values[v].dtype == DataType::kFloat32; }

Status supports(const Node& n, const Graph& g) {
  for (int v : n.inputs)
    if (!is_f32(g, v))
      return Status(StatusCode::kUnsupported, fmt::format("input '{}' is {}, {} runs float32 only", g.values[v].name,
                                                          dtype_name(g.values[v].dtype), kKernelName));
  auto at = GemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  const Value& b = g.values[n.inputs[1]];
  if (b.rank_known && b.shape.size() != 2) return Status(StatusCode::kUnsupported, "B must be 2-D");
  return Status::ok();
}

// Build-time packing: fold transB/alpha into a [K,N] weight and beta into an [N] bias.
Status pack(Node& n, Graph& g) {
  if (!g.is_constant(n.inputs[1])) return Status::ok();
  auto at = GemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  const Tensor& b = *g.values[n.inputs[1]].constant;
  const int64_t K = at->trans_b ? b.shape[1] : b.shape[0];
  const int64_t N = at->trans_b ? b.shape[0] : b.shape[1];
  std::vector<float> w(static_cast<size_t>(K * N));
  const float* src = b.data<float>();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t j = 0; j < N; ++j) w[k * N + j] = at->alpha * (at->trans_b ? src[j * K + k] : src[k * N + j]);
  Value wv;
  wv.name = g.values[n.inputs[1]].name + "/packed_KxN";
  wv.set_constant(Tensor::from_vector(DataType::kFloat32, {K, N}, w));
  n.inputs[1] = g.add_value(std::move(wv));
  n.attrs.set("transB", int64_t{0});
  n.attrs.set("alpha", 1.f);
  // A bias that is the same for every row ([N], [1,N] or a scalar) becomes beta*C as [N].
  if (n.inputs.size() > 2 && g.is_constant(n.inputs[2])) {
    const Tensor& c = *g.values[n.inputs[2]].constant;
    Dims cs = c.shape;
    while (cs.size() < 2) cs.insert(cs.begin(), 1);
    if (cs.size() == 2 && cs[0] == 1 && (cs[1] == N || cs[1] == 1)) {
      std::vector<float> bias(static_cast<size_t>(N));
      for (int64_t j = 0; j < N; ++j) bias[j] = at->beta * c.data<float>()[cs[1] == 1 ? 0 : j];
      Value bv;
      bv.name = g.values[n.inputs[2]].name + "/packed_bias";
      bv.set_constant(Tensor::from_vector(DataType::kFloat32, {N}, bias));
      n.inputs[2] = g.add_value(std::move(bv));
      n.attrs.set("beta", 1.f);
    }
  }
  return Status::ok();
}

// What differs between the float and the INT8 GEMM: data types and the INT8 rescale.

Result<std::unique_ptr<CpuKernel>> create(const KernelInit& init) {
  auto at = GemmAttrs::parse(init.node);
  if (!at.is_ok()) return at.status();
  const Tensor* c = init.constants.size() > 2 ? init.constants[2] : nullptr;
  return make_onednn_gemm(init.node.name, *at, init.constants[1], c);
}

// kiln.QGemm: int8 A and constant int8 W, float32 bias and per-channel weight scales (see ops/quantize.h).
Status supports_qgemm(const Node& n, const Graph& g) {
  auto at = QGemmAttrs::parse(n);
  if (!at.is_ok()) return at.status();
  if (g.values[n.inputs[0]].dtype != DataType::kInt8)
    return Status(StatusCode::kUnsupported, fmt::format("{} takes int8 A", kQGemmName));
  for (size_t i : {size_t{1}, size_t{3}})
    if (!g.is_constant(n.inputs[i]))
      return Status(StatusCode::kUnsupported, fmt::format("{} needs constant weights and weight scales", kQGemmName));
  if (n.inputs[2] != kNoValue && !g.is_constant(n.inputs[2]))
    return Status(StatusCode::kUnsupported, fmt::format("{} needs a constant bias", kQGemmName));
  return Status::ok();
}

Result<std::unique_ptr<CpuKernel>> create_qgemm(const KernelInit& init) {
  auto q = QGemmAttrs::parse(init.node);
  if (!q.is_ok()) return q.status();
  const Tensor& w = *init.constants[1];
  const Tensor& ws = *init.constants[3];
  const int64_t n = q->trans_b ? w.shape[0] : w.shape[1];
  GemmAttrs at;
  at.trans_b = q->trans_b;
  at.activation = q->activation;
  at.activation_alpha = q->activation_alpha;
  MatmulTypes types;
  types.a = types.b = memory::data_type::s8;
  types.y = q->int8_output() ? memory::data_type::s8 : memory::data_type::f32;
  types.y_inv_scale = q->int8_output() ? 1.f / q->y_scale : 0.f;
  types.out_scales.resize(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) types.out_scales[j] = q->a_scale * ws.data<float>()[ws.elements() == 1 ? 0 : j];
  // oneDNN 2.x adds the bias to the int32 accumulator before the output scale: dst = scale * (acc + bias).
  std::vector<float> bias;
  if (init.constants[2]) {
    bias.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) bias[j] = init.constants[2]->data<float>()[j] / types.out_scales[j];
  }
  return make_onednn_gemm(init.node.name, at, &w, nullptr, std::move(types), std::move(bias));
}

CpuKernelDef qgemm_def() {
  CpuKernelDef d;
  d.name = kQGemmName;
  d.domain = "kiln";
  d.op_type = "QGemm";
  d.priority = 10;
  d.supports = supports_qgemm;
  d.create = create_qgemm;
  return d;
}

CpuKernelDef def(const std::string& domain, const std::string& op, const std::string& name) {
  CpuKernelDef d;
  d.name = name;
  d.domain = domain;
  d.op_type = op;
  d.priority = 10;
  d.supports = supports;
  d.pack = pack;
  d.create = create;
  return d;
}

const KernelRegistrar kGemm{def("", "Gemm", kKernelName)};
const KernelRegistrar kFusedGemm{def("kiln", "FusedGemm", std::string(kKernelName) + ".fused")};
const KernelRegistrar kQGemm{qgemm_def()};

}  // namespace
}  // namespace kiln::cpu
