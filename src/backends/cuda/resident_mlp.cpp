// Host side of the low-latency mode: recognising a dense chain in the engine graph, the mapped buffers,
// the request/answer protocol (see resident_mlp_kernel.h), and a process-wide registry that stops every
// resident kernel at exit.
//
// Mapped memory is never freed while another resident kernel runs: cudaFreeHost may wait for the whole
// device, which a resident kernel never leaves idle. Released blocks are parked and freed once the last
// resident kernel has stopped; new blocks are allocated four at a time when none runs, so that a second
// context usually starts from a parked block.
#include "backends/cuda/resident_mlp.h"

#include <atomic>
#include <chrono>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backends/cuda/cuda_util.h"
#include "core/env_setting.h"
#include "engine/engine_model.h"
#include "ops/fused_mlp.h"
#include "ops/gemm.h"

namespace kiln::cuda {
namespace {

using resident::Channel;
using resident::kClusterCtas;
using resident::KernelParams;
using resident::LayerParams;

constexpr auto kReadyDeadline = std::chrono::seconds(5);
constexpr auto kAnswerDeadline = std::chrono::seconds(2);
constexpr auto kStopDeadline = std::chrono::seconds(2);
// The kernel ends after this long without a request (KILN_LOW_LATENCY_IDLE_MS overrides), so that a
// device-wide wait elsewhere in the process (cudaFree, lazy module loading) is delayed, never stuck.
constexpr uint64_t kDefaultIdleMs = 200;

uint64_t idle_ns_setting() {
  const char* v = std::getenv("KILN_LOW_LATENCY_IDLE_MS");
  const long long ms = v ? std::atoll(v) : 0;
  return static_cast<uint64_t>(ms > 0 ? ms : static_cast<long long>(kDefaultIdleMs)) * 1000000ull;
}

size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

// CTAs in the resident cluster: 8 (portable) unless KILN_LOW_LATENCY_CTAS asks for 16 (experiment, see
// docs/performance.md); any other value is refused when the mode starts.
int cluster_ctas_setting() {
  const char* v = std::getenv("KILN_LOW_LATENCY_CTAS");
  return v && *v ? std::atoi(v) : kClusterCtas;
}

// Who reads the input from host (or device) memory: CTA 0 all of it ("cta0"), or every CTA an even share
// ("spread"), each sending its share to every CTA. KILN_LOW_LATENCY_INPUT picks (experiment; see
// docs/performance.md).
Result<bool> input_spread_setting() { return two_way_setting("KILN_LOW_LATENCY_INPUT", "cta0", "spread", false); }

// CTA 0's phase trace (the timings low_latency_info() and bench_low_latency report): on unless
// KILN_LOW_LATENCY_TRACE=0 (an experiment: what the trace's timer reads cost on the request's path).
Result<bool> trace_setting() { return two_way_setting("KILN_LOW_LATENCY_TRACE", "0", "1", true); }

int64_t host_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- registry of live resident kernels and parked mapped blocks -------------------------------------
struct Block {
  unsigned char* ptr;
  size_t bytes;
};

class Registry {
 public:
  static Registry& instance() {
    static Registry* r = new Registry;  // never destroyed: the exit handler may run after static destructors
    return *r;
  }
  void add(ResidentMlp* m) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.insert(m);
    if (!exit_handler_) {
      exit_handler_ = true;
      std::atexit([] { Registry::instance().stop_all(); });
    }
  }
  void remove(ResidentMlp* m) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(m);
  }
  // A parked block of at least `bytes`, else a fresh one (four at a time while no resident kernel runs).
  Result<Block> take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < parked_.size(); ++i)
      if (parked_[i].bytes >= bytes) {
        Block b = parked_[i];
        parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(i));
        return b;
      }
    const int count = live_.empty() ? 4 : 1;
    std::vector<Block> fresh;
    for (int i = 0; i < count; ++i) {
      void* p = nullptr;
      Status s = check(cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable),
                       fmt::format("allocating {} bytes of mapped page-locked memory for the resident kernel", bytes));
      if (!s.is_ok()) {
        if (fresh.empty()) return s;
        break;
      }
      fresh.push_back({static_cast<unsigned char*>(p), bytes});
    }
    for (size_t i = 1; i < fresh.size(); ++i) parked_.push_back(fresh[i]);
    return fresh[0];
  }
  void give_back(Block b) {
    std::lock_guard<std::mutex> lock(mu_);
    parked_.push_back(b);
    if (!live_.empty()) return;
    for (const Block& p : parked_) (void)cudaFreeHost(p.ptr);
    parked_.clear();
  }
  void stop_all() {
    std::vector<ResidentMlp*> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      live.assign(live_.begin(), live_.end());
    }
    for (ResidentMlp* m : live) m->stop();
  }

 private:
  std::mutex mu_;
  std::set<ResidentMlp*> live_;
  std::vector<Block> parked_;
  bool exit_handler_ = false;
};

// ---- recognising the chain ------------------------------------------------------------------------------
Status unsupported(const Node& n, const std::string& why) {
  return Status(StatusCode::kUnsupported, fmt::format("layer '{}' ({}, kernel {}) {}", n.name, n.op_type, n.kernel, why));
}

// Product of dims 1.. when all are known, else -1. Every value of the chain is [rows, ...] with this width.
int64_t row_width(const Value& v) {
  if (!v.rank_known || v.shape.size() < 2) return -1;
  int64_t w = 1;
  for (size_t d = 1; d < v.shape.size(); ++d) {
    if (v.shape[d] < 0) return -1;
    w *= v.shape[d];
  }
  return w;
}

bool is_float(DataType dt) { return dt == DataType::kFloat32 || dt == DataType::kFloat16; }

int activation_code(Activation a) {
  switch (a) {
    case Activation::kNone: return resident::kActNone;
    case Activation::kRelu: return resident::kActRelu;
    case Activation::kLeakyRelu: return resident::kActLeakyRelu;
    case Activation::kSigmoid: return resident::kActSigmoid;
    case Activation::kTanh: return resident::kActTanh;
  }
  return resident::kActNone;
}

// A dense layer's weight [n, k] and optional bias [n], both uploaded constants.
Result<ResidentLayerPlan> dense_layer(const Node& n, const Graph& g, const std::vector<const void*>& dev, int w_id,
                                      int b_id, int64_t width, const std::string& label) {
  ResidentLayerPlan lp;
  lp.name = label;
  if (!g.is_constant(w_id) || !dev[w_id]) return unsupported(n, "has a weight that is not a constant on the GPU");
  const Tensor& w = *g.values[w_id].constant;
  if (w.shape.size() != 2 || !is_float(w.dtype))
    return unsupported(n, fmt::format("has weight '{}' [{}] {}; low-latency mode takes a 2-D float32/float16 [N,K] weight",
                                      g.values[w_id].name, dims_to_string(w.shape, ","), dtype_name(w.dtype)));
  if (w.shape[1] != width)
    return unsupported(n, fmt::format("has K = {} but its input rows hold {} values", w.shape[1], width));
  LayerParams& p = lp.params;
  p.weight = dev[w_id];
  p.n = static_cast<int>(w.shape[0]);
  p.k = static_cast<int>(w.shape[1]);
  p.weight_half = w.dtype == DataType::kFloat16;
  lp.weight_dtype = w.dtype;
  if (b_id != kNoValue) {
    if (!g.is_constant(b_id) || !dev[b_id]) return unsupported(n, "has a bias that is not a constant on the GPU");
    const Tensor& b = *g.values[b_id].constant;
    if (b.shape.size() != 1 || b.shape[0] != w.shape[0] || !is_float(b.dtype))
      return unsupported(n, fmt::format("has C '{}' [{}] {}; low-latency mode takes a per-column bias [{}]",
                                        g.values[b_id].name, dims_to_string(b.shape, ","), dtype_name(b.dtype), p.n));
    p.bias = dev[b_id];
    p.bias_half = b.dtype == DataType::kFloat16;
  }
  return lp;
}

}  // namespace

Result<ResidentPlan> plan_resident_mlp(const Graph& g, const std::vector<const void*>& dev) {
  if (g.inputs.size() != 1 || g.outputs.size() != 1)
    return Status(StatusCode::kUnsupported,
                  fmt::format("the engine has {} inputs and {} outputs; low-latency mode serves one input and one output",
                              g.inputs.size(), g.outputs.size()));
  ResidentPlan plan;
  int v = g.inputs[0];
  const Value& in = g.values[v];
  plan.input_name = in.name;
  plan.input_dtype = in.dtype;
  if (!is_float(in.dtype))
    return Status(StatusCode::kUnsupported, fmt::format("input '{}' is {}; low-latency mode takes float32 or float16",
                                                        in.name, dtype_name(in.dtype)));
  int64_t width = row_width(in);
  if (width <= 0)
    return Status(StatusCode::kUnsupported,
                  fmt::format("input '{}' [{}] is not [rows, ...] with known dims after the first", in.name,
                              dims_to_string(in.shape, ",")));
  const auto consumers = g.consumers();
  while (!g.is_graph_output(v)) {
    if (consumers[v].size() != 1)
      return Status(StatusCode::kUnsupported,
                    fmt::format("value '{}' feeds {} layers; low-latency mode serves a single chain", g.values[v].name,
                                consumers[v].size()));
    const Node& n = g.nodes[consumers[v][0]];
    if (n.inputs.empty() || n.inputs[0] != v || n.outputs.size() != 1)
      return unsupported(n, "is not a one-output layer reading the chain as its first input");
    const Value& out = g.values[n.outputs[0]];
    const bool dense = n.op_type == "Gemm" || (n.domain == "kiln" && (n.op_type == "FusedGemm" || n.op_type == "FusedMLP"));
    if (n.kernel == kViewKernel) {
      if (row_width(out) != width)
        return unsupported(n, fmt::format("reshapes rows of {} values into [{}]; low-latency mode keeps rows whole", width,
                                          dims_to_string(out.shape, ",")));
    } else if (n.op_type == "Cast" && n.domain.empty()) {
      const DataType from = g.values[v].dtype;
      if (!is_float(from) || !is_float(out.dtype)) return unsupported(n, "is a Cast between non-float types");
      if (from == DataType::kFloat32 && out.dtype == DataType::kFloat16) {
        if (plan.layers.empty()) plan.round_input_half = true;
        else plan.layers.back().params.round_output_half = 1;
      }
    } else if (dense && n.op_type == "FusedMLP") {
      auto at = FusedMlpAttrs::parse(n);
      if (!at.is_ok()) return std::move(at).take_status().with_context(n.describe());
      if (at->weight_layout != "nk")
        return unsupported(n, fmt::format("has weights packed as '{}'; low-latency mode reads the [N,K] layout",
                                          at->weight_layout));
      for (int i = 0; i < at->layers(); ++i) {
        auto lp = dense_layer(n, g, dev, n.inputs[fused_mlp_weight_input(i)], n.inputs[fused_mlp_bias_input(i)], width,
                              fmt::format("{}[{}]", n.name, i));
        if (!lp.is_ok()) return lp.status();
        lp->params.activation = activation_code(at->activations[i]);
        lp->params.activation_alpha = at->activation_alphas[i];
        width = lp->params.n;
        plan.layers.push_back(std::move(*lp));
      }
      plan.layers.back().params.round_output_half = out.dtype == DataType::kFloat16;
    } else if (dense) {
      auto at = GemmAttrs::parse(n);
      if (!at.is_ok()) return std::move(at).take_status().with_context(n.describe());
      if (at->trans_a) return unsupported(n, "has transA = 1");
      if (!at->trans_b) return unsupported(n, "has a weight that is not packed as [N,K] (transB = 1)");
      if (row_width(g.values[n.inputs[0]]) != width) return unsupported(n, "reads A with rows of another width");
      const int c = n.inputs.size() > 2 ? n.inputs[2] : kNoValue;
      auto lp = dense_layer(n, g, dev, n.inputs[1], at->beta == 0.f ? kNoValue : c, width, n.name);
      if (!lp.is_ok()) return lp.status();
      lp->params.alpha = at->alpha;
      lp->params.beta = at->beta;
      lp->params.activation = activation_code(at->activation);
      lp->params.activation_alpha = at->activation_alpha;
      lp->params.round_output_half = out.dtype == DataType::kFloat16;
      width = lp->params.n;
      plan.layers.push_back(std::move(*lp));
    } else {
      return unsupported(n, "is not a dense layer (Gemm, kiln.FusedGemm, kiln.FusedMLP), a view or a float Cast");
    }
    if (row_width(out) != width)
      return unsupported(n, fmt::format("writes [{}], not rows of {} values", dims_to_string(out.shape, ","), width));
    v = n.outputs[0];
  }
  if (plan.layers.empty())
    return Status(StatusCode::kUnsupported, "the engine has no dense layer; low-latency mode serves chains of dense layers");
  if (plan.layers.size() > static_cast<size_t>(resident::kMaxLayers))
    return Status(StatusCode::kUnsupported, fmt::format("the chain has {} dense layers; the resident kernel takes up to {}",
                                                        plan.layers.size(), resident::kMaxLayers));
  const Value& out = g.values[v];
  plan.output_name = out.name;
  plan.output_dtype = out.dtype;
  if (!is_float(out.dtype))
    return Status(StatusCode::kUnsupported, fmt::format("output '{}' is {}", out.name, dtype_name(out.dtype)));
  return plan;
}

// ---- the resident kernel's lifetime ---------------------------------------------------------------------
Status ResidentMlp::kernel_status(const char* what) const {
  const cudaError_t e = cudaStreamQuery(stream_);
  if (e == cudaSuccess) {
    if (idled_out()) return Status::ok();  // ended after idling: the caller launches it again
    return Status(StatusCode::kRuntimeError, fmt::format("{}: the resident kernel has exited", what));
  }
  if (e == cudaErrorNotReady) return Status::ok();
  return check(e, fmt::format("{}: the resident kernel failed", what));
}

Status ResidentMlp::start(const ResidentPlan& plan, int max_rows) {
  stop();
  failed_.clear();
  if (max_rows < 1 || max_rows > resident::kMaxRows)
    return Status(StatusCode::kOutOfRange,
                  fmt::format("low-latency max_rows {} is outside 1..{} (the resident kernel's limit)", max_rows,
                              resident::kMaxRows));
  plan_ = plan;
  KernelParams& p = params_;
  p = KernelParams{};
  p.ctas = cluster_ctas_setting();
  if (p.ctas != kClusterCtas && p.ctas != resident::kMaxClusterCtas)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("KILN_LOW_LATENCY_CTAS={}: the resident cluster has {} or {} CTAs", p.ctas, kClusterCtas,
                              resident::kMaxClusterCtas));
  auto spread = input_spread_setting();
  if (!spread.is_ok()) return spread.status();
  p.input_spread = *spread ? 1 : 0;
  auto trace = trace_setting();
  if (!trace.is_ok()) return trace.status();
  p.trace = *trace ? 1 : 0;
  auto limit = resident::resident_smem_limit();
  if (!limit.is_ok()) return limit.status();
  // Shared-memory layout (see resident_mlp.cu), each piece 16-byte aligned.
  size_t at = 0;
  int act_stride = 8;
  p.layers = static_cast<int>(plan.layers.size());
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    LayerParams& L = p.layer[l];
    L = plan.layers[l].params;
    L.k_pad = static_cast<int>(round_up(static_cast<size_t>(L.k), 8));
    L.cols_per_cta = (L.n + p.ctas - 1) / p.ctas;
    L.weight_offset = static_cast<uint32_t>(at);
    at += round_up(static_cast<size_t>(L.cols_per_cta) * L.k_pad * (L.weight_half ? 2 : 4), 16);
    L.bias_offset = static_cast<uint32_t>(at);
    at += round_up(static_cast<size_t>(L.cols_per_cta) * 4, 16);
    if (l + 1 < plan.layers.size()) act_stride = std::max(act_stride, static_cast<int>(round_up(static_cast<size_t>(L.n), 8)));
    if (at > static_cast<size_t>(*limit))
      return Status(StatusCode::kUnsupported,
                    fmt::format("layer '{}' ({}x{} {}) brings each CTA's share of the weights to {} bytes, over the "
                                "{}-byte shared-memory limit with {} CTAs",
                                plan.layers[l].name, L.n, L.k, dtype_name(plan.layers[l].weight_dtype), at, *limit,
                                p.ctas));
  }
  p.act_stride = act_stride;
  p.max_rows = max_rows;
  if (const char* t = std::getenv("KILN_LOW_LATENCY_THREADS"))  // experiments: fewer warps per CTA
    p.threads = std::clamp(std::atoi(t) / 32 * 32, 32, resident::kThreads);
  // One input buffer: CTA 0 sends request n+1's input only after the host saw the answer to request n,
  // which every CTA's layer 0 reads of it came before.
  p.input_offset = static_cast<uint32_t>(at);
  at += round_up(static_cast<size_t>(max_rows) * p.layer[0].k_pad * 4, 16);
  for (int b = 0; b < 2; ++b) {
    p.act_offset[b] = static_cast<uint32_t>(at);
    at += round_up(static_cast<size_t>(max_rows) * act_stride * 4, 16);
  }
  p.smem_bytes = static_cast<uint32_t>(at);
  if (at > static_cast<size_t>(*limit))
    return Status(StatusCode::kUnsupported,
                  fmt::format("{} rows need {} bytes of shared memory per CTA (weights and activations), over the {}-byte "
                              "limit; ask for fewer rows", max_rows, at, *limit));
  p.input_half = plan.input_dtype == DataType::kFloat16;
  p.round_input_half = plan.round_input_half;
  p.output_half = plan.output_dtype == DataType::kFloat16;

  // Mapped block: Channel, then the input rows, then the output's LL words (one per element); page-aligned.
  const size_t in_bytes = static_cast<size_t>(max_rows) * p.layer[0].k * dtype_size(plan.input_dtype);
  const size_t out_bytes = static_cast<size_t>(max_rows) * p.layer[p.layers - 1].n * 8;
  const size_t in_at = 4096, out_at = in_at + round_up(in_bytes, 4096);
  auto block = Registry::instance().take(out_at + round_up(out_bytes, 4096));
  if (!block.is_ok()) return block.status();
  block_ = block->ptr;
  block_bytes_ = block->bytes;
  std::memset(block_, 0, out_at + out_bytes);  // no stale LL word may carry a sequence number this kernel will use
  channel_ = reinterpret_cast<Channel*>(block_);
  input_ = block_ + in_at;
  output_ = block_ + out_at;
  void* dev = nullptr;
  Status s = check(cudaHostGetDevicePointer(&dev, block_, 0), "cudaHostGetDevicePointer (resident kernel's mapped block)");
  if (!s.is_ok()) {
    stop();
    return s;
  }
  p.channel = static_cast<Channel*>(dev);
  p.input = static_cast<unsigned char*>(dev) + in_at;
  p.output = static_cast<unsigned char*>(dev) + out_at;
  seq_ = 0;
  generation_ = 0;
  relaunches_ = 0;
  idle_ns_ = idle_ns_setting();

  // A stream of its own, non-blocking: the legacy default stream must never wait for a kernel that does not end.
  s = check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating the resident kernel's stream");
  if (!s.is_ok()) {
    stop();
    return s;
  }
  Registry::instance().add(this);
  running_ = true;
  s = launch(0);
  if (!s.is_ok()) {
    stop();
    return s;
  }
  return Status::ok();
}

Status ResidentMlp::launch(uint32_t start_seq) {
  params_.generation = ++generation_;
  params_.start_seq = start_seq;
  params_.idle_ns = idle_ns_;
  Status s = resident::launch_resident_mlp(params_, stream_, &clusters_possible_);
  if (!s.is_ok()) return s;
  launched_ = true;
  return wait_ready();
}

Status ResidentMlp::relaunch(uint32_t start_seq) {
  Status s = end_kernel();
  if (s.is_ok()) s = launch(start_seq);
  if (!s.is_ok()) {
    failed_ = s.message();
    return std::move(s).with_context("launching the resident kernel again after it idled");
  }
  ++relaunches_;
  return Status::ok();
}

bool ResidentMlp::idled_out() const {
  return std::atomic_ref<uint32_t>(channel_->exited).load(std::memory_order_acquire) == generation_;
}

Status ResidentMlp::wait_ready() {
  const auto deadline = std::chrono::steady_clock::now() + kReadyDeadline;
  std::atomic_ref<uint32_t> ready(channel_->ready);
  while (ready.load(std::memory_order_acquire) != generation_) {
    Status s = kernel_status("waiting for the resident kernel to start");
    if (!s.is_ok()) return s;
    if (std::chrono::steady_clock::now() > deadline)
      return Status(StatusCode::kRuntimeError,
                    fmt::format("the resident kernel did not start within {} s (is the GPU busy with other resident "
                                "kernels? {} clusters of {} CTAs fit on an idle GPU)",
                                kReadyDeadline.count(), clusters_possible_, params_.ctas));
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  // Clock offset for the leases (the kernel's first lease runs from a moment later than this).
  const int64_t now = host_ns();
  gpu_minus_host_ns_ = static_cast<int64_t>(*const_cast<const volatile uint64_t*>(&channel_->ready_gpu_ns)) - now;
  lease_end_host_ns_ = now + static_cast<int64_t>(idle_ns_);
  return Status::ok();
}

Status ResidentMlp::run(const void* in, bool in_device, const TensorDesc& in_desc, void* out, bool out_device,
                        const TensorDesc& out_desc) {
  if (!running_) return Status(StatusCode::kInvalidArgument, "low-latency mode is not started");
  if (!failed_.empty())
    return Status(StatusCode::kRuntimeError, "low-latency mode failed earlier (" + failed_ + "); turn it off and on again");
  const KernelParams& p = params_;
  const int64_t rows = in_desc.shape.empty() ? 0 : in_desc.shape[0];
  if (rows < 1 || rows > p.max_rows)
    return Status(StatusCode::kOutOfRange, fmt::format("{} rows; low-latency mode was started for 1..{}", rows, p.max_rows));
  const int k0 = p.layer[0].k, n_last = p.layer[p.layers - 1].n;
  if (in_desc.dtype != plan_.input_dtype || volume(in_desc.shape) != rows * k0)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("input [{}] {} is not {} rows of {} {} values", dims_to_string(in_desc.shape, ","),
                              dtype_name(in_desc.dtype), rows, k0, dtype_name(plan_.input_dtype)));
  if (out_desc.dtype != plan_.output_dtype || volume(out_desc.shape) != rows * n_last)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("output [{}] {} is not {} rows of {} {} values", dims_to_string(out_desc.shape, ","),
                              dtype_name(out_desc.dtype), rows, n_last, dtype_name(plan_.output_dtype)));
  // A request may only be posted well inside the lease: near its end CTA 0 may already have told every CTA
  // to end. There, or after it ended, stop the kernel and launch it again first.
  const int64_t margin = std::max<int64_t>(static_cast<int64_t>(idle_ns_) / 5, 1000000);
  if (idled_out() || host_ns() > lease_end_host_ns_ - margin) {
    Status s = relaunch(seq_);
    if (!s.is_ok()) return s;
  }
  const uint32_t seq = seq_ + 1;
  const size_t out_count = static_cast<size_t>(rows) * n_last;
  if (!in_device) std::memcpy(input_, in, static_cast<size_t>(rows) * k0 * dtype_size(plan_.input_dtype));
  const int64_t now = host_ns();
  const uint64_t lease = static_cast<uint64_t>(now + gpu_minus_host_ns_) + idle_ns_;
  lease_end_host_ns_ = now + static_cast<int64_t>(idle_ns_);
  const uint64_t in_addr = in_device ? reinterpret_cast<uint64_t>(in) : 0;
  const uint64_t out_addr = out_device ? reinterpret_cast<uint64_t>(out) : 0;
  post_request(resident::kCommandRun, static_cast<uint32_t>(rows), in_addr, out_addr, lease, seq);

  // The answer: every output LL word carrying seq (host output), or every CTA's done_seq (device output).
  auto* out_words = reinterpret_cast<uint64_t*>(output_);
  auto answered = [&](size_t i) -> bool {
    if (out_device) return std::atomic_ref<uint32_t>(channel_->done_seq[i]).load(std::memory_order_acquire) == seq;
    return static_cast<uint32_t>(std::atomic_ref<uint64_t>(out_words[i]).load(std::memory_order_acquire) >> 32) == seq;
  };
  const size_t waits = out_device ? static_cast<size_t>(p.ctas) : out_count;
  const auto deadline = std::chrono::steady_clock::now() + kAnswerDeadline;
  for (size_t i = 0; i < waits; ++i) {
    for (uint32_t spins = 1; !answered(i); ++spins) {
      if (spins % 4096 != 0) continue;
      if (idled_out()) {  // every CTA has ended (should not happen inside the lease): launch again to serve it
        Status s = relaunch(seq - 1);
        if (!s.is_ok()) return s;
        continue;
      }
      Status s = kernel_status("waiting for a low-latency answer");
      if (s.is_ok() && std::chrono::steady_clock::now() <= deadline) continue;
      if (s.is_ok())
        s = Status(StatusCode::kRuntimeError,
                   out_device ? fmt::format("the resident kernel did not answer request {} ({} rows) within {} s: CTA {} "
                                            "last answered request {}",
                                            seq, rows, kAnswerDeadline.count(), i, channel_->done_seq[i])
                              : fmt::format("the resident kernel did not answer request {} ({} rows) within {} s: output "
                                            "element {} of {} still holds request {}'s",
                                            seq, rows, kAnswerDeadline.count(), i, out_count,
                                            static_cast<uint32_t>(out_words[i] >> 32)));
      failed_ = s.message();
      return s;
    }
  }
  if (!out_device) {
    if (plan_.output_dtype == DataType::kFloat16) {
      auto* dst = static_cast<uint16_t*>(out);
      for (size_t i = 0; i < out_count; ++i) dst[i] = static_cast<uint16_t>(out_words[i]);
    } else {
      auto* dst = static_cast<uint32_t*>(out);
      for (size_t i = 0; i < out_count; ++i) dst[i] = static_cast<uint32_t>(out_words[i]);
    }
  }
  return Status::ok();
}

void ResidentMlp::post_request(uint32_t command, uint32_t rows, uint64_t in_addr, uint64_t out_addr, uint64_t lease,
                               uint32_t seq) {
  const uint32_t payload[resident::kRequestWords] = {command,
                                                     rows,
                                                     static_cast<uint32_t>(in_addr),
                                                     static_cast<uint32_t>(in_addr >> 32),
                                                     static_cast<uint32_t>(out_addr),
                                                     static_cast<uint32_t>(out_addr >> 32),
                                                     static_cast<uint32_t>(lease),
                                                     static_cast<uint32_t>(lease >> 32)};
  // After the input (x86 keeps stores in order; the kernel reads the input after seeing every word's seq
  // and an acquire fence). memcpy may use non-temporal stores: fence them first.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (int i = 0; i < resident::kRequestWords; ++i)
    std::atomic_ref<uint64_t>(channel_->request[i]).store(resident::ll_word(payload[i], seq), std::memory_order_release);
  seq_ = seq;
}

Status ResidentMlp::end_kernel(bool* ended) {
  if (ended) *ended = true;
  if (!launched_) return Status::ok();
  launched_ = false;
  if (!idled_out())  // still serving (or about to end): tell it to stop
    post_request(resident::kCommandStop, 0, 0, 0, 0, seq_ + 1);
  const auto deadline = std::chrono::steady_clock::now() + kStopDeadline;
  for (;;) {
    const cudaError_t e = cudaStreamQuery(stream_);
    if (e == cudaSuccess) return Status::ok();
    if (e != cudaErrorNotReady) return check(e, "the resident kernel ended with an error");
    if (std::chrono::steady_clock::now() > deadline) {
      if (ended) *ended = false;
      return Status(StatusCode::kRuntimeError,
                    fmt::format("the resident kernel did not stop within {} s", kStopDeadline.count()));
    }
    std::this_thread::yield();
  }
}

void ResidentMlp::stop() {
  if (!running_ && !block_ && !stream_) return;
  bool exited = true;
  if (launched_) {
    Status s = end_kernel(&exited);
    if (!s.is_ok()) {
      fmt::print(stderr, "kiln: warning: {}{}\n", s.message(),
                 exited ? "" : fmt::format("; its {} bytes of mapped memory are left allocated", block_bytes_));
    }
  }
  launched_ = false;
  running_ = false;
  Registry::instance().remove(this);
  if (stream_) (void)cudaStreamDestroy(stream_);
  stream_ = nullptr;
  // A kernel that did not stop may still read the block: leave it allocated rather than free it under it.
  if (block_ && exited) Registry::instance().give_back({block_, block_bytes_});
  block_ = nullptr;
  channel_ = nullptr;
  input_ = output_ = nullptr;
}

// CTA 0's average time per request phase since the last launch (the kernel's own globaltimer sums).
nlohmann::json ResidentMlp::trace_json() const {
  nlohmann::json t = nlohmann::json::object();
  if (!channel_) return t;
  const auto* raw = const_cast<const volatile uint64_t*>(channel_->trace);
  const uint64_t n = raw[resident::kTraceCount];
  if (n == 0) return t;
  static const char* names[resident::kTracePhases] = {"header", "input", "hand_out_barrier", "layer_compute",
                                                      "layer_barriers", "output_fence", "done_flag"};
  for (int i = 0; i < resident::kTracePhases; ++i) t[names[i]] = static_cast<double>(raw[i]) / 1000.0 / n;
  t["requests"] = n;
  double ns = 0;
  for (int i = 0; i < resident::kTracePhases; ++i) ns += static_cast<double>(raw[i]);
  if (ns > 0) t["sm_clock_mhz"] = static_cast<double>(raw[resident::kTraceSmCycles]) / ns * 1000.0;
  t["warp0_cycles_per_request"] = {{"k_loop", static_cast<double>(raw[resident::kTraceWarpKLoop]) / n},
                                   {"reduce_store", static_cast<double>(raw[resident::kTraceWarpReduceStore]) / n},
                                   {"column_blocks", static_cast<double>(raw[resident::kTraceWarpBlocks]) / n}};
  return t;
}

std::string ResidentMlp::json() const {
  if (!running_) return "{}";
  nlohmann::json layers = nlohmann::json::array();
  for (int l = 0; l < params_.layers; ++l) {
    const LayerParams& L = params_.layer[l];
    layers.push_back({{"layer", plan_.layers[l].name},
                      {"k", L.k},
                      {"n", L.n},
                      {"weight_dtype", std::string(dtype_name(plan_.layers[l].weight_dtype))},
                      {"bias", L.bias != nullptr},
                      {"activation", L.activation},
                      {"columns_per_cta", L.cols_per_cta}});
  }
  return nlohmann::json{{"kernel", fmt::format("cuda.resident_mlp.cluster{}", params_.ctas)},
                        {"layers", layers},
                        {"input", plan_.input_name},
                        {"input_dtype", std::string(dtype_name(plan_.input_dtype))},
                        {"round_input_to_fp16", plan_.round_input_half},
                        {"output", plan_.output_name},
                        {"output_dtype", std::string(dtype_name(plan_.output_dtype))},
                        {"ctas", params_.ctas},
                        {"input_read_by", params_.input_spread ? "every CTA (a share each)" : "CTA 0"},
                        {"trace", params_.trace != 0},
                        {"threads_per_cta", params_.threads},
                        {"smem_bytes_per_cta", params_.smem_bytes},
                        {"max_rows", params_.max_rows},
                        {"idle_exit_ms", idle_ns_ / 1000000},
                        {"trace_us_per_request", trace_json()},
                        {"relaunches_after_idle", relaunches_},
                        {"clusters_that_fit", clusters_possible_}}
      .dump();
}

}  // namespace kiln::cuda
