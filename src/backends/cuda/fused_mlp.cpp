// kiln.FusedMLP on the GPU, host side: supports, tune, create and the kernel object. Two kernels:
//   cuda.f16.fused_mlp  float16 weights, X/Y float32 or float16: both tactics below, chosen by timing.
//   cuda.f32.fused_mlp  float32 weights (FP32/TF32 engines): the per-layer tactic only. The fused kernels
//                       are float16 MMA; the node still saves what fusing saves at the graph level.
// Tactics:
//   fused      one launch for the whole chain: the cluster8 kernel for M <= small_max_m, above it the large
//              kernel, rows64 (fused_mlp.cu, mma.sync) or on sm_90 GPUs wg64 (fused_mlp_sm90a.cu, wgmma);
//              which large kernel and small_max_m are measured at build time.
//   per-layer  one cuBLASLt matmul per layer through LtMatmul (lt_matmul.h: the same plans, tactic timing and
//              timing cache as the Gemm kernels), float32 X cast to float16 first, bias+ReLU in cuBLASLt's
//              epilogue, other activations as one elementwise kernel after their layer.
// tune() times both (CUDA graph replays) at the profile's opt shape and records the faster (kiln_tactic, kiln_tactic_data =
// [mode (0 per-layer, 1 fused with rows64, 2 fused with wg64), small_max_m, per-layer: each layer's cuBLASLt
// tactic bands (lt_matmul.h)],
// kiln_tactic_ms). Without a recorded tactic the kernel runs per-layer (see Tactic).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/fused_mlp.h"
#include "backends/cuda/gemm_elementwise.h"
#include "backends/cuda/lt_matmul.h"
#include "core/env_setting.h"
#include "ops/float16.h"
#include "ops/fused_mlp.h"

namespace kiln::cuda {
namespace {

constexpr const char* kF16Name = "cuda.f16.fused_mlp";
constexpr const char* kF32Name = "cuda.f32.fused_mlp";
constexpr int64_t kDefaultSmallMaxM = 64;

struct Dims2 {
  std::vector<int> k, n;
  int layers() const { return static_cast<int>(k.size()); }
};

Result<Dims2> layer_dims(const Node& node, const Graph& g, int layers) {
  Dims2 d;
  for (int i = 0; i < layers; ++i) {
    const Value& w = g.values[node.inputs[fused_mlp_weight_input(i)]];
    if (!w.rank_known || w.shape.size() != 2 || w.shape[0] <= 0 || w.shape[1] <= 0)
      return Status(StatusCode::kUnsupported, fmt::format("layer {}: W '{}' has no static 2-D shape", i, w.name));
    d.n.push_back(static_cast<int>(w.shape[0]));
    d.k.push_back(static_cast<int>(w.shape[1]));
  }
  return d;
}

// The weights' dtype picks the kernel: float16 -> kF16Name, float32 -> kF32Name.
const char* kernel_name(DataType weights) { return weights == DataType::kFloat32 ? kF32Name : kF16Name; }

// float32 weights compute in FP32 or TF32 by the node's precision (as the Gemm kernels); float16 weights
// always accumulate in float32.
Result<bool> use_tf32(const Node& node, DataType weights) {
  const std::string& p = node.precision;
  if (weights == DataType::kFloat32) {
    if (p == "fp32" || p.empty()) return false;
    if (p == "tf32") return true;
  } else if (p == "fp16" || p == "fp32" || p == "tf32" || p.empty()) {
    return false;
  }
  return Status(StatusCode::kUnsupported,
                fmt::format("precision '{}' is not supported by {}", p, kernel_name(weights)));
}

Status supports(const Node& node, const Graph& g, DataType weights) {
  const char* kName = kernel_name(weights);
  auto at = FusedMlpAttrs::parse(node);
  if (!at.is_ok()) return at.status();
  auto refuse = [](const std::string& why) { return Status(StatusCode::kUnsupported, why); };
  if (at->weight_layout != "nk") return refuse(fmt::format("weights in layout '{}' ({} reads nk)", at->weight_layout, kName));
  const int L = at->layers();
  if (L < 1 || L > kFmlpMaxLayers) return refuse(fmt::format("{} layers ({} runs 1..{})", L, kName, kFmlpMaxLayers));
  const DataType xdt = g.values[node.inputs[0]].dtype, ydt = g.values[node.outputs[0]].dtype;
  if (xdt != DataType::kFloat32 && !(xdt == DataType::kFloat16 && weights == DataType::kFloat16))
    return refuse(fmt::format("X is {}; {} takes float32{}", dtype_name(xdt), kName,
                              weights == DataType::kFloat16 ? " or float16" : ""));
  if (ydt != xdt) return refuse(fmt::format("Y is {}, X {}: {} writes X's dtype", dtype_name(ydt), dtype_name(xdt), kName));
  auto tf32 = use_tf32(node, weights);
  if (!tf32.is_ok()) return tf32.status();
  for (int i = 0; i < L; ++i) {
    const Value& w = g.values[node.inputs[fused_mlp_weight_input(i)]];
    const Value& b = g.values[node.inputs[fused_mlp_bias_input(i)]];
    if (w.dtype != weights || b.dtype != weights)
      return refuse(fmt::format("layer {}: W is {}, b {}; {} runs {} weights and biases", i, dtype_name(w.dtype),
                                dtype_name(b.dtype), kName, dtype_name(weights)));
    if (!g.is_constant(node.inputs[fused_mlp_weight_input(i)]) || !g.is_constant(node.inputs[fused_mlp_bias_input(i)]))
      return refuse(fmt::format("layer {}: W or b is not a constant", i));
  }
  auto d = layer_dims(node, g, L);
  if (!d.is_ok()) return d.status();
  if (weights == DataType::kFloat16)  // the fused kernels' limits (the per-layer tactic has none)
    for (int i = 0; i < L; ++i) {
      if (d->n[i] > kFmlpMaxN)
        return refuse(fmt::format("layer {}: {} output features ({} holds at most {} per layer)", i, d->n[i], kName, kFmlpMaxN));
      if (d->k[i] % 8 != 0)
        return refuse(fmt::format("layer {}: {} input features, not a multiple of 8 (16-byte rows for {})", i, d->k[i], kName));
    }
  return Status::ok();
}

size_t align256(size_t v) { return (v + 255) / 256 * 256; }

// The per-layer tactic: one LtMatmul per layer over the op's own buffers (W [N,K] is cuBLASLt's "TN" form;
// hidden activations and biases have the weights' dtype). With float16 weights and float32 IO, X is cast to
// float16 first (one vectorized pass) and the last matmul writes float32 Y itself, with a float32 copy of
// the last bias.
class PerLayer {
 public:
  struct Types {
    DataType weights = DataType::kFloat16;
    DataType io = DataType::kFloat32;
    bool tf32 = false;
    bool casts_x() const { return io == DataType::kFloat32 && weights == DataType::kFloat16; }
  };

  static Result<std::unique_ptr<PerLayer>> create(const FusedMlpAttrs& at, const Dims2& d, Types types,
                                                  const std::vector<std::vector<LtBand>>& bands,
                                                  const Tensor* last_bias, const std::string& context) {
    std::unique_ptr<PerLayer> pl(new PerLayer());
    pl->at_ = at;
    pl->d_ = d;
    pl->t_ = types;
    for (int i = 0; i < d.layers(); ++i) {
      const bool last = i + 1 == d.layers();
      auto lt = LtMatmul::create(LtTypes{types.weights, last ? types.io : types.weights, types.tf32},
                                 i < static_cast<int>(bands.size()) ? bands[i] : std::vector<LtBand>{},
                                 fmt::format("{} layer {} (per-layer cuBLASLt)", context, i));
      if (!lt.is_ok()) return lt.status();
      pl->lt_.push_back(std::move(*lt));
    }
    if (types.casts_x()) {
      if (!last_bias)
        return Status(StatusCode::kInternal, context + ": the last layer's bias has no host copy to convert to float32");
      std::vector<float> b32(static_cast<size_t>(d.n.back()));
      for (size_t j = 0; j < b32.size(); ++j) b32[j] = static_cast<float>(last_bias->get_double(static_cast<int64_t>(j)));
      Status s = pl->bias32_.alloc(b32.size() * 4, context);
      if (s.is_ok())
        s = check(cudaMemcpy(pl->bias32_.p, b32.data(), b32.size() * 4, cudaMemcpyHostToDevice), context + ": bias upload");
      if (!s.is_ok()) return s;
    }
    return pl;
  }

  static LtProblem problem(const FusedMlpAttrs& at, const Dims2& d, int i, int64_t m) {
    LtProblem p;
    p.m = m;
    p.n = d.n[i];
    p.k = d.k[i];
    p.trans_w = true;
    p.bias = true;
    p.relu = at.activations[i] == Activation::kRelu;
    return p;
  }

  Status select(int64_t m) {
    m_ = m;
    if (m <= 0) return Status::ok();
    for (int i = 0; i < d_.layers(); ++i) {
      Status s = lt_[i]->select(problem(at_, d_, i, m));
      if (!s.is_ok()) return s;
    }
    return Status::ok();
  }

  size_t workspace_bytes() const {
    if (m_ <= 0) return 0;
    size_t lt = 0;
    for (const auto& l : lt_) lt = std::max(lt, l->workspace_bytes());
    return x_bytes() + 2 * hidden_bytes() + lt;
  }

  // x_f32 false: X arrives float16 already (host IO converted it), so the cast is skipped.
  Status run(const void* x, bool x_f32, const std::vector<const void*>& w, const std::vector<const void*>& b, void* y,
             void* ws, cudaStream_t stream) {
    if (m_ <= 0) return Status::ok();
    auto* base = static_cast<unsigned char*>(ws);
    const size_t xb = x_bytes(), hb = hidden_bytes();
    void* h[2] = {base + xb, base + xb + hb};
    void* lt_ws = base + xb + 2 * hb;
    const void* a = x;
    if (t_.casts_x() && x_f32) {
      Status s = launch_fmlp_cast_f16(static_cast<const float*>(x), base, m_ * d_.k[0], stream);
      if (!s.is_ok()) return s;
      a = base;
    }
    for (int i = 0; i < d_.layers(); ++i) {
      const bool last = i + 1 == d_.layers();
      void* out = last ? y : h[i & 1];
      const void* bias = last && t_.casts_x() ? bias32_.p : b[i];
      Status s = lt_[i]->run(a, w[i], out, bias, 1.f, 0.f, lt_ws, stream);
      if (!s.is_ok()) return s;
      const Activation act = at_.activations[i];
      if (act != Activation::kNone && act != Activation::kRelu) {
        s = launch_activation(out, last ? t_.io : t_.weights, m_ * d_.n[i], act, at_.activation_alphas[i], stream);
        if (!s.is_ok()) return s;
      }
      a = out;
    }
    return Status::ok();
  }

 private:
  PerLayer() = default;
  size_t x_bytes() const { return t_.casts_x() ? align256(size_t(m_) * d_.k[0] * 2) : 0; }
  size_t hidden_bytes() const {
    const int maxn = *std::max_element(d_.n.begin(), d_.n.end());
    return align256(size_t(m_) * maxn * dtype_size(t_.weights));
  }

  FusedMlpAttrs at_;
  Dims2 d_;
  Types t_;
  std::vector<std::unique_ptr<LtMatmul>> lt_;
  DeviceBuffer bias32_;
  int64_t m_ = 0;
};

enum class Large { kRows64 = 1, kWg64 = 2 };  // the fused tactic's large-M kernel (= its mode in the data)

const char* large_name(Large k) { return k == Large::kWg64 ? "wg64" : "rows64"; }

// Without a recorded tactic: per-layer cuBLASLt (heuristic algorithms), measured faster than both fused kernels
// on the H100 at every M tried (bench/GPU_NOTES.md, 2026-11-25).
struct Tactic {
  bool fused = false;
  Large large = Large::kRows64;
  int64_t small_max_m = kDefaultSmallMaxM;
  std::vector<std::vector<LtBand>> bands;  // per layer (per-layer mode): its cuBLASLt tactic bands
};

// [mode, small_max_m] then, per-layer, for each layer [count, bands_to_ints...].
std::vector<int64_t> tactic_ints(const Tactic& t) {
  std::vector<int64_t> v{t.fused ? static_cast<int64_t>(t.large) : 0, t.small_max_m};
  if (!t.fused)
    for (const auto& b : t.bands) {
      auto ints = bands_to_ints(b);
      v.push_back(static_cast<int64_t>(ints.size()));
      v.insert(v.end(), ints.begin(), ints.end());
    }
  return v;
}

Result<Tactic> read_fmlp_tactic(const Node& node, int layers, const char* kernel) {
  Tactic t;
  if (!node.attrs.has(kTacticDataAttr)) return t;
  auto data = node.attrs.get_ints(kTacticDataAttr, {});
  if (!data.is_ok()) return data.status();
  const auto& v = *data;
  const std::string what = fmt::format("{}: attribute {}", node.describe(), kTacticDataAttr);
  auto malformed = [&] {
    return Status(StatusCode::kInvalidArgument, fmt::format("{} holds {} ints, not a {} tactic", what, v.size(), kernel));
  };
  if (v.size() < 2 || v[0] < 0 || v[0] > 2) return malformed();
  t.fused = v[0] != 0;
  if (t.fused) t.large = static_cast<Large>(v[0]);
  t.small_max_m = v[1];
  size_t at = 2;
  if (!t.fused && v.size() > 2)
    for (int i = 0; i < layers; ++i) {
      if (at >= v.size() || v[at] < 0 || at + 1 + static_cast<size_t>(v[at]) > v.size()) return malformed();
      const std::vector<int64_t> ints(v.begin() + at + 1, v.begin() + at + 1 + v[at]);
      at += 1 + ints.size();
      auto b = bands_from_ints(ints, fmt::format("{} (layer {})", what, i));
      if (!b.is_ok()) return b.status();
      t.bands.push_back(std::move(*b));
    }
  if (at != v.size()) return malformed();
  return t;
}

// A large kernel's packed weights (fused_mlp.h), every layer in one device buffer.
struct PackedWeights {
  std::unique_ptr<DeviceBuffer> buf = std::make_unique<DeviceBuffer>();
  std::vector<const void*> layer;  // device address of each layer's blocks

  // w[i]: layer i's float16 weights on the host; packed for `large`.
  static Result<PackedWeights> upload(const std::vector<const Tensor*>& w, const Dims2& d, Large large,
                                      const std::string& context) {
    const bool wg = large == Large::kWg64;
    PackedWeights pw;
    std::vector<size_t> offset;
    size_t total = 0;
    for (int i = 0; i < d.layers(); ++i) {
      if (!w[i] || w[i]->dtype != DataType::kFloat16)
        return Status(StatusCode::kInternal, fmt::format("{}: layer {} has no host float16 weights to pack", context, i));
      offset.push_back(total);
      total += wg ? fmlp_wg_packed_halves(d.n[i], d.k[i]) : fmlp_packed_halves(d.n[i], d.k[i]);
    }
    std::vector<uint16_t> host(total);
    for (int i = 0; i < d.layers(); ++i)
      (wg ? fmlp_wg_pack_weights : fmlp_pack_weights)(w[i]->data<uint16_t>(), d.n[i], d.k[i], host.data() + offset[i]);
    Status s = pw.buf->alloc(total * 2, context + ": packed weights");
    if (s.is_ok())
      s = check(cudaMemcpy(pw.buf->p, host.data(), total * 2, cudaMemcpyHostToDevice), context + ": packed weights upload");
    if (!s.is_ok()) return s;
    for (size_t o : offset) pw.layer.push_back(static_cast<const uint16_t*>(pw.buf->p) + o);
    return pw;
  }
};

FmlpParams make_params(const FusedMlpAttrs& at, const Dims2& d, const void* const* inputs, void* y, bool y_f32,
                       int64_t m, const PackedWeights* packed) {
  FmlpParams p;
  p.x = inputs[0];
  p.y = y;
  p.y_f32 = y_f32;
  p.m = m;
  p.layers = d.layers();
  for (int i = 0; i < d.layers(); ++i) {
    p.l[i].w = inputs[fused_mlp_weight_input(i)];
    p.l[i].b = inputs[fused_mlp_bias_input(i)];
    p.l[i].wpack = packed ? packed->layer[i] : nullptr;
    p.l[i].k = d.k[i];
    p.l[i].n = d.n[i];
    p.l[i].act = at.activations[i];
    p.l[i].alpha = at.activation_alphas[i];
  }
  return p;
}

Status launch_large(const FmlpParams& p, bool x_f32, Large large, cudaStream_t stream) {
  return large == Large::kWg64 ? launch_fmlp_wg(p, x_f32, stream) : launch_fmlp_large(p, x_f32, stream);
}

Status launch_fused(const FmlpParams& p, bool x_f32, const Tactic& t, cudaStream_t stream) {
  if (reinterpret_cast<uintptr_t>(p.x) % 16 != 0)
    return Status(StatusCode::kUnsupported,
                  fmt::format("{}: X at {} is not 16-byte aligned (the fused kernels load it with cp.async)", kF16Name, p.x));
  if (p.m <= t.small_max_m && fmlp_small_smem(p) > 0) return launch_fmlp_small(p, x_f32, stream);
  return launch_large(p, x_f32, t.large, stream);
}

class FusedMlpKernel final : public CudaKernel {
 public:
  FusedMlpKernel(FusedMlpAttrs at, Dims2 d, DataType io, bool rounds_x, Tactic t, std::unique_ptr<PerLayer> pl,
                 PackedWeights packed, std::string context)
      : at_(std::move(at)), d_(std::move(d)), io_(io), rounds_x_(rounds_x), t_(std::move(t)), per_layer_(std::move(pl)),
        packed_(std::move(packed)), context_(std::move(context)) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>&) override {
    m_ = volume(inputs[0].shape) / d_.k[0];
    // X float16 in a float32-IO layer: the host converted it (host_input_form), as this layer would have.
    x_f32_ = inputs[0].dtype == DataType::kFloat32;
    if (inputs[0].dtype != io_ && !(io_ == DataType::kFloat32 && inputs[0].dtype == DataType::kFloat16 && rounds_x_))
      return Status(StatusCode::kInvalidArgument, fmt::format("{}: X is {}, the layer was built for {}", context_,
                                                              dtype_name(inputs[0].dtype), dtype_name(io_)));
    return per_layer_ ? per_layer_->select(m_) : Status::ok();
  }
  size_t workspace_bytes() const override { return per_layer_ ? per_layer_->workspace_bytes() : 0; }

  Status enqueue(const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) override {
    if (m_ <= 0) return Status::ok();
    Status s;
    if (per_layer_) {
      std::vector<const void*> w, b;
      for (int i = 0; i < d_.layers(); ++i) {
        w.push_back(inputs[fused_mlp_weight_input(i)]);
        b.push_back(inputs[fused_mlp_bias_input(i)]);
      }
      s = per_layer_->run(inputs[0], x_f32_, w, b, outputs[0], workspace, stream);
    } else {
      s = launch_fused(make_params(at_, d_, inputs, outputs[0], io_ == DataType::kFloat32, m_, &packed_), x_f32_, t_,
                       stream);
    }
    if (s.is_ok()) return s;
    return Status(s.code(), fmt::format("{}: {}", context_, s.message()));
  }

 private:
  FusedMlpAttrs at_;
  Dims2 d_;
  DataType io_;
  bool rounds_x_;  // float32 X is rounded to float16 before any use (float16 weights)
  bool x_f32_ = true;
  Tactic t_;
  std::unique_ptr<PerLayer> per_layer_;
  PackedWeights packed_;  // fused tactic only
  std::string context_;
  int64_t m_ = 0;
};

std::string layer_context(const Node& n, DataType weights) {
  return fmt::format("layer '{}' ({})", n.name, kernel_name(weights));
}

Result<PerLayer::Types> per_layer_types(const Node& node, const Graph& g) {
  PerLayer::Types t;
  t.weights = g.values[node.inputs[fused_mlp_weight_input(0)]].dtype;
  t.io = g.values[node.inputs[0]].dtype;
  auto tf32 = use_tf32(node, t.weights);
  if (!tf32.is_ok()) return tf32.status();
  t.tf32 = *tf32;
  return t;
}

Result<std::unique_ptr<CudaKernel>> create(const KernelInit& init) {
  auto at = FusedMlpAttrs::parse(init.node);
  if (!at.is_ok()) return at.status();
  auto d = layer_dims(init.node, init.graph, at->layers());
  if (!d.is_ok()) return d.status();
  auto types = per_layer_types(init.node, init.graph);
  if (!types.is_ok()) return types.status();
  const char* kernel = kernel_name(types->weights);
  auto t = read_fmlp_tactic(init.node, at->layers(), kernel);
  if (!t.is_ok()) return t.status();
  const DataType io = types->io;
  const std::string context = layer_context(init.node, types->weights);
  if (t->fused && types->weights != DataType::kFloat16)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: the recorded tactic is the fused kernel, which {} does not have", context, kernel));
  if (t->fused && t->large == Large::kWg64 && !fmlp_wg_available())
    return Status(StatusCode::kUnsupported,
                  fmt::format("{}: the engine was built with the fused wg64 kernel, which runs on sm_90 GPUs (H100/H200) "
                              "only; rebuild the engine on this GPU",
                              context));
  Status s = fmlp_prepare();
  if (!s.is_ok()) return s;
  std::unique_ptr<PerLayer> pl;
  PackedWeights packed;
  if (!t->fused) {
    auto p = PerLayer::create(*at, *d, *types, t->bands, init.constants[fused_mlp_bias_input(at->layers() - 1)], context);
    if (!p.is_ok()) return p.status();
    pl = std::move(*p);
  } else {
    std::vector<const Tensor*> w;
    for (int i = 0; i < at->layers(); ++i) w.push_back(init.constants[fused_mlp_weight_input(i)]);
    auto p = PackedWeights::upload(w, *d, t->large, context);
    if (!p.is_ok()) return p.status();
    packed = std::move(*p);
  }
  return std::unique_ptr<CudaKernel>(std::make_unique<FusedMlpKernel>(std::move(*at), std::move(*d), io, types->casts_x(), std::move(*t),
                                                                      std::move(pl), std::move(packed), context));
}

// ---------------------------------------------------------------------------------------------------------
// Tuning

// Per-launch time in ms as a CUDA graph replays it (engines run with --useCudaGraph; plain launches would time
// the host's launch cost, which favours one fused launch over four): 10 launches captured into one graph,
// median of 15 timed replays after 3 warm-ups, divided by 10.
Result<double> time_ms(const std::function<Status()>& launch, cudaStream_t stream, const std::string& what) {
  constexpr int kPerGraph = 10, kWarmup = 3, kRuns = 15;
  Status s = launch();  // once outside the capture: lazy module loading, first-use setup
  if (s.is_ok()) s = check(cudaStreamSynchronize(stream), what + ": synchronizing");
  if (!s.is_ok()) return s;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t a = nullptr, b = nullptr;
  auto cleanup = [&] {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
  };
  s = check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), what + ": cudaStreamBeginCapture");
  if (!s.is_ok()) return s;
  for (int i = 0; i < kPerGraph && s.is_ok(); ++i) s = launch();
  Status end = check(cudaStreamEndCapture(stream, &graph), what + ": cudaStreamEndCapture");
  if (s.is_ok()) s = end;
  if (s.is_ok()) s = check(cudaGraphInstantiate(&exec, graph, 0), what + ": cudaGraphInstantiate");
  if (s.is_ok()) s = check(cudaEventCreate(&a), what + ": cudaEventCreate");
  if (s.is_ok()) s = check(cudaEventCreate(&b), what + ": cudaEventCreate");
  for (int i = 0; i < kWarmup && s.is_ok(); ++i) s = check(cudaGraphLaunch(exec, stream), what + ": cudaGraphLaunch");
  std::vector<float> ms;
  for (int i = 0; i < kRuns && s.is_ok(); ++i) {
    s = check(cudaEventRecord(a, stream), what + ": cudaEventRecord");
    if (s.is_ok()) s = check(cudaGraphLaunch(exec, stream), what + ": cudaGraphLaunch");
    if (s.is_ok()) s = check(cudaEventRecord(b, stream), what + ": cudaEventRecord");
    if (s.is_ok()) s = check(cudaEventSynchronize(b), what + ": cudaEventSynchronize");
    float t = 0;
    if (s.is_ok()) s = check(cudaEventElapsedTime(&t, a, b), what + ": cudaEventElapsedTime");
    ms.push_back(t);
  }
  cleanup();
  if (!s.is_ok()) {
    cudaGetLastError();
    return s;
  }
  std::nth_element(ms.begin(), ms.begin() + kRuns / 2, ms.end());
  return static_cast<double>(ms[kRuns / 2]) / kPerGraph;
}

// Per-call time in ms as the host sees it without a CUDA graph: 20 launches back to back, then a synchronize,
// wall clock / 20, median of 7 after a warm-up round. That is the larger of the launches' host cost and their
// GPU time: what a caller running the engine without --useCudaGraph pays (the course's own loop).
Result<double> host_time_ms(const std::function<Status()>& launch, cudaStream_t stream, const std::string& what) {
  constexpr int kPerRound = 20, kRounds = 7;
  std::vector<double> ms;
  for (int r = 0; r <= kRounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    Status s;
    for (int i = 0; i < kPerRound && s.is_ok(); ++i) s = launch();
    if (s.is_ok()) s = check(cudaStreamSynchronize(stream), what + ": synchronizing");
    if (!s.is_ok()) return s;
    if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + kRounds / 2, ms.end());
  return ms[kRounds / 2] / kPerRound;
}

// The per-layer path wins only where it is also faster as the host sees it without a graph
// (KILN_FUSED_MLP_TUNE_HOST=0: graph replays alone decide). Timed on graph replays alone, the course's 1/1/1
// FP16 engine picked per-layer cuBLASLt (0.0100 against 0.0125 ms for the fused kernel) and then paid four
// launches per call: the course's loop at batch 1 took 64.8-67.0 us against 43.1-44.1 us with this rule
// (GPU run 33, alternated in one process; the 1/8192/8192 engine 43.5-44.6 us).
Result<bool> env_tune_host() { return two_way_setting("KILN_FUSED_MLP_TUNE_HOST", "0", "1", true); }

Status tune(Node& node, const Graph& g, const TuneContext& ctx) {
  auto at = FusedMlpAttrs::parse(node);
  if (!at.is_ok()) return at.status();
  auto d = layer_dims(node, g, at->layers());
  if (!d.is_ok()) return d.status();
  auto types = per_layer_types(node, g);
  if (!types.is_ok()) return types.status();
  const bool fusable = types->weights == DataType::kFloat16;  // the fused kernels are float16 MMA
  const std::string context = layer_context(node, types->weights);
  const std::string what = context + ": tuning";
  const DataType io = types->io;
  const int L = d->layers();
  const int64_t m_opt = volume(ctx.in_opt.at(0).shape) / d->k[0];
  const int64_t m_min = std::max<int64_t>(1, volume(ctx.in_min.at(0).shape) / d->k[0]);
  const int64_t m_max = std::max(m_opt, volume(ctx.in_max.at(0).shape) / d->k[0]);
  if (m_opt <= 0) return Status::ok();
  Status s = fmlp_prepare();
  if (!s.is_ok()) return s;

  auto tune_host = env_tune_host();
  if (!tune_host.is_ok()) return tune_host.status();
  // host_time_ms at the opt shape, taken only where per-layer wins on graph replays (tune_host only).
  std::optional<double> fused_host_ms, per_layer_host_ms;

  // Constants and random non-zero activations at the largest M timed.
  const std::vector<int64_t> probe_ms = {1, 16, 64, 256};
  int64_t m_buf = m_opt;
  for (int64_t m : probe_ms)
    if (m <= m_max) m_buf = std::max(m_buf, m);
  std::vector<DeviceBuffer> consts(node.inputs.size());
  std::vector<const void*> inputs(node.inputs.size(), nullptr);
  for (size_t i = 1; i < node.inputs.size(); ++i) {
    const Tensor& t = *g.values[node.inputs[i]].constant;
    s = consts[i].alloc(t.nbytes(), what);
    if (s.is_ok()) s = check(cudaMemcpy(consts[i].p, t.raw(), t.nbytes(), cudaMemcpyHostToDevice), what + ": upload");
    if (!s.is_ok()) return s;
    inputs[i] = consts[i].p;
  }
  DeviceBuffer x, y;
  s = x.alloc(size_t(m_buf) * d->k[0] * dtype_size(io), what);
  if (s.is_ok()) s = y.alloc(size_t(m_buf) * d->n.back() * dtype_size(io), what);
  if (s.is_ok()) s = launch_fill_random(x.p, io, m_buf * d->k[0], 7, ctx.stream);
  if (!s.is_ok()) return s;
  inputs[0] = x.p;

  // The fused kernels: the large kernel at the opt shape (rows64, and wg64 where the GPU has it), then which
  // M the cluster8 kernel wins up to against it (probe upward, stop at the first M where it is no faster),
  // then the time at the opt shape.
  Tactic best;
  best.small_max_m = 0;
  std::optional<double> fused_ms;
  std::string probes, fused_name;
  const bool x_f32 = io == DataType::kFloat32;
  std::vector<Large> larges{Large::kRows64};
  std::vector<PackedWeights> packed;  // per entry of larges
  size_t li = 0;                      // the large kernel picked
  if (fusable) {
    std::vector<const Tensor*> w;
    for (int i = 0; i < L; ++i) w.push_back(&*g.values[node.inputs[fused_mlp_weight_input(i)]].constant);
    if (fmlp_wg_available()) larges.push_back(Large::kWg64);
    for (Large k : larges) {
      auto pw = PackedWeights::upload(w, *d, k, what);
      if (!pw.is_ok()) return pw.status();
      packed.push_back(std::move(*pw));
    }
    auto large_time = [&](int64_t m, size_t i) -> Result<double> {
      const FmlpParams p = make_params(*at, *d, inputs.data(), y.p, x_f32, m, &packed[i]);
      return time_ms([&] { return launch_large(p, x_f32, larges[i], ctx.stream); }, ctx.stream, what);
    };
    double large_ms = 0;
    for (size_t i = 0; i < larges.size(); ++i) {
      auto t = large_time(m_opt, i);
      if (!t.is_ok()) return t.status();
      probes += fmt::format(" {} {:.4f};", large_name(larges[i]), *t);
      if (i == 0 || *t < large_ms) {
        large_ms = *t;
        li = i;
      }
    }
    best.large = larges[li];
    auto small_time = [&](int64_t m) -> Result<double> {
      const FmlpParams p = make_params(*at, *d, inputs.data(), y.p, x_f32, m, nullptr);
      return time_ms([&] { return launch_fmlp_small(p, x_f32, ctx.stream); }, ctx.stream, what);
    };
    double small_at_opt = -1;
    if (fmlp_small_smem(make_params(*at, *d, inputs.data(), y.p, x_f32, 1, nullptr)) > 0) {
      for (int64_t m : probe_ms) {
        if (m > m_max) break;
        auto ts = small_time(m);
        if (!ts.is_ok()) return ts.status();
        auto tl = large_time(m, li);
        if (!tl.is_ok()) return tl.status();
        probes += fmt::format(" M={}: cluster8 {:.4f} {} {:.4f};", m, *ts, large_name(best.large), *tl);
        if (*ts >= *tl) break;
        best.small_max_m = m;
        if (m == m_opt) small_at_opt = *ts;
      }
    }
    if (m_opt <= best.small_max_m) {
      if (small_at_opt < 0) {
        auto ts = small_time(m_opt);
        if (!ts.is_ok()) return ts.status();
        small_at_opt = *ts;
      }
      fused_ms = small_at_opt;
    } else {
      fused_ms = large_ms;
    }
    fused_name = best.small_max_m > 0
                     ? fmt::format("fused: cluster8 M<={}, {} above", best.small_max_m, large_name(best.large))
                     : fmt::format("fused: {}", large_name(best.large));
  }

  // The per-layer path: each layer's cuBLASLt tactic through lt_tune (and the timing cache), then the chain.
  std::optional<double> per_layer_ms;
  std::vector<std::vector<LtBand>> bands;
  Status ps;
  {
    const char* gemm_kernel = types->weights == DataType::kFloat32 ? "cuda.f32.gemm.cublaslt" : "cuda.f16.gemm.cublaslt";
    for (int i = 0; i < L && ps.is_ok(); ++i) {
      const bool last = i + 1 == L;
      const LtTypes lt_types{types->weights, last ? io : types->weights, types->tf32};
      auto t = lt_tune(lt_types, PerLayer::problem(*at, *d, i, m_opt), PerLayer::problem(*at, *d, i, m_min),
                       PerLayer::problem(*at, *d, i, m_max), 1.f, 0.f, ctx, gemm_kernel, node.precision,
                       fmt::format("{} layer {}", context, i));
      if (!t.is_ok()) ps = t.status();
      else bands.push_back(std::move(*t));
    }
    std::unique_ptr<PerLayer> pl;
    if (ps.is_ok()) {
      auto p = PerLayer::create(*at, *d, *types, bands, &*g.values[node.inputs[fused_mlp_bias_input(L - 1)]].constant,
                                context);
      if (p.is_ok()) pl = std::move(*p);
      else ps = p.status();
    }
    if (ps.is_ok()) ps = pl->select(m_opt);
    DeviceBuffer ws;
    if (ps.is_ok()) ps = ws.alloc(pl->workspace_bytes(), what);
    if (ps.is_ok()) {
      std::vector<const void*> w, b;
      for (int i = 0; i < L; ++i) {
        w.push_back(inputs[fused_mlp_weight_input(i)]);
        b.push_back(inputs[fused_mlp_bias_input(i)]);
      }
      auto t = time_ms([&] { return pl->run(x.p, true, w, b, y.p, ws.p, ctx.stream); }, ctx.stream, what);
      if (!t.is_ok()) ps = t.status();
      // Per-layer wins on graph replays: does it also win as the host sees it without a graph?
      if (ps.is_ok() && *tune_host && fused_ms && *t < *fused_ms) {
        const FmlpParams p = make_params(*at, *d, inputs.data(), y.p, x_f32, m_opt, &packed[li]);
        auto fh = host_time_ms([&] { return launch_fused(p, x_f32, best, ctx.stream); }, ctx.stream, what);
        if (!fh.is_ok()) return fh.status();
        fused_host_ms = *fh;
        auto th = host_time_ms([&] { return pl->run(x.p, true, w, b, y.p, ws.p, ctx.stream); }, ctx.stream, what);
        if (th.is_ok()) per_layer_host_ms = *th;
        else ps = th.status();
      }
      if (ps.is_ok()) per_layer_ms = *t;  // a per-layer path that failed to run is not a candidate
    }
  }
  if (!fused_ms && !per_layer_ms) return ps;  // float32 weights: the per-layer path is the only one
  if (ctx.verbose)
    fmt::print(stderr, "kiln: {}: fused {}, per-layer cuBLASLt {} at M={};{}\n", context,
               fused_ms ? fmt::format("{:.4f} ms", *fused_ms) : "-",
               per_layer_ms ? fmt::format("{:.4f} ms", *per_layer_ms) : "unavailable (" + ps.message() + ")", m_opt,
               probes);
  if (ctx.verbose && (fused_host_ms || per_layer_host_ms))
    fmt::print(stderr, "kiln: {}: as the host sees it without a graph: fused {}, per-layer {}\n", context,
               fused_host_ms ? fmt::format("{:.4f} ms", *fused_host_ms) : "-",
               per_layer_host_ms ? fmt::format("{:.4f} ms", *per_layer_host_ms) : "-");
  // Unless KILN_FUSED_MLP_TUNE_HOST=0, the per-layer path must also be faster without a graph.
  const bool per_layer_faster_on_host = !fused_host_ms || !per_layer_host_ms || *per_layer_host_ms < *fused_host_ms;
  if (per_layer_ms && (!fused_ms || (*per_layer_ms < *fused_ms && per_layer_faster_on_host))) {
    best.fused = false;
    best.bands = bands;
    std::string tuned_at;  // the M bands every layer's algorithms were timed at
    for (const LtBand& band : bands.front()) tuned_at += fmt::format("{}M={}", tuned_at.empty() ? "" : ", ", band.m);
    const std::string name = fmt::format("per-layer cuBLASLt, algorithms timed at {}", tuned_at);
    node.attrs.set(kTacticAttr, fused_ms ? fmt::format("{} ({:.4f} ms; {} {:.4f} ms)", name, *per_layer_ms, fused_name,
                                                       *fused_ms)
                                         : fmt::format("{} ({:.4f} ms)", name, *per_layer_ms));
    node.attrs.set(kTacticMsAttr, static_cast<float>(*per_layer_ms));
  } else {
    best.fused = true;
    node.attrs.set(kTacticAttr, per_layer_ms ? fmt::format("{} ({:.4f} ms; per-layer cuBLASLt {:.4f} ms)", fused_name,
                                                           *fused_ms, *per_layer_ms)
                                             : fused_name);
    node.attrs.set(kTacticMsAttr, static_cast<float>(*fused_ms));
  }
  node.attrs.set(kTacticDataAttr, tactic_ints(best));
  return Status::ok();
}

KernelDef fused_mlp_def(DataType weights) {
  KernelDef d;
  d.name = kernel_name(weights);
  d.domain = "kiln";
  d.op_type = "FusedMLP";
  d.priority = 10;
  d.supports = [weights](const Node& n, const Graph& g) { return supports(n, g, weights); };
  d.tune = tune;
  d.create = create;
  // float16 weights: float32 X is rounded to float16 (RN) before any use, in every tactic.
  if (weights == DataType::kFloat16)
    d.host_input_form = [](const Node& n, const Graph& g, int input) {
      return input == 0 && g.values[n.inputs[0]].dtype == DataType::kFloat32 ? HostInputForm{DataType::kFloat16}
                                                                            : HostInputForm{};
    };
  return d;
}

const KernelRegistrar kFusedMlpF16{fused_mlp_def(DataType::kFloat16)};
const KernelRegistrar kFusedMlpF32{fused_mlp_def(DataType::kFloat32)};

}  // namespace

size_t fmlp_wg_packed_halves(int n, int k) {
  return size_t(fmlp_chunks(k)) * fmlp_wg_padded_n(n) * kFmlpChunkK;
}

void fmlp_wg_pack_weights(const uint16_t* w, int n, int k, uint16_t* out) {
  const int np = fmlp_wg_padded_n(n), chunks = fmlp_chunks(k);
  for (int c = 0; c < chunks; ++c)
    for (int kg = 0; kg < kFmlpChunkK / 8; ++kg)  // [k-group][feature-group][8 features][8 k]
      for (int row = 0; row < np; ++row)
        for (int e = 0; e < 8; ++e) {
          const int col = c * kFmlpChunkK + kg * 8 + e;
          *out++ = row < n && col < k ? w[size_t(row) * k + col] : uint16_t{0};
        }
}

size_t fmlp_packed_halves(int n, int k) {
  return size_t(fmlp_chunks(k)) * fmlp_large_padded_n(n) * kFmlpPackLd;
}

void fmlp_pack_weights(const uint16_t* w, int n, int k, uint16_t* out) {
  const int np = fmlp_large_padded_n(n), chunks = fmlp_chunks(k);
  for (int c = 0; c < chunks; ++c)
    for (int r = 0; r < np; ++r)
      for (int j = 0; j < kFmlpPackLd; ++j) {
        const int col = c * kFmlpChunkK + j;
        *out++ = r < n && j < kFmlpChunkK && col < k ? w[size_t(r) * k + col] : uint16_t{0};
      }
}

}  // namespace kiln::cuda
