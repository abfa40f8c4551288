// The CUDA backend as the runtime sees it. Per engine: the GPU check (an engine runs only on the kind
// of GPU it was built and tuned for), kernel definitions, and every weight uploaded once into one
// device allocation. Per context: a device arena, kernel instances, one shared workspace, a stream of
// its own, and optionally one CUDA graph per shape/address set.
#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/resident_mlp.h"
#include "runtime/backend.h"

namespace kiln {
namespace {

using cuda::check;

std::string layer_context(const Node& n) { return fmt::format("layer '{}' ({})", n.name, n.kernel); }

class CudaEngine;

class CudaContext final : public BackendContext {
 public:
  CudaContext(std::shared_ptr<const CudaEngine> engine, const EngineModel& model)
      : engine_(std::move(engine)), model_(model) {}
  ~CudaContext() override;

  Status init();
  uint8_t* arena() override { return arena_; }
  const void* constant(int v) const override;
  Status reshape(size_t l, const std::vector<TensorDesc>& in, const std::vector<TensorDesc>& out) override;
  void invalidate() override { drop_graph(); }
  Status enqueue(const PointerTables& t, void* stream, std::vector<LayerTiming>* timings,
                 const AfterLayer* after_layer) override;
  Status synchronize(void* stream) override {
    return check(cudaStreamSynchronize(stream ? static_cast<cudaStream_t>(stream) : stream_), "cudaStreamSynchronize");
  }
  void set_cuda_graph(bool on) override {
    use_graph_ = on;
    drop_graph();
  }
  Result<MemoryLocation> locate(const void* address) const override {
    cudaPointerAttributes a{};
    const cudaError_t e = cudaPointerGetAttributes(&a, address);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky; clear it so the next check does not report it
      return check(e, "cudaPointerGetAttributes (is it a valid address?)");
    }
    if (a.type == cudaMemoryTypeHost) return MemoryLocation::kPinnedHost;
    if (a.type == cudaMemoryTypeUnregistered) return MemoryLocation::kPageableHost;
    return MemoryLocation::kDevice;  // device or managed memory
  }
  // Low-latency mode: a resident kernel (resident_mlp.h) serves the engine when it is a dense chain.
  Status start_low_latency(int max_rows) override;
  Status run_low_latency(const void* const* inputs, const MemoryLocation* in_where, const TensorDesc* in_shapes,
                         void* const* outputs, const MemoryLocation* out_where, const TensorDesc* out_shapes) override {
    if (!resident_) return Status(StatusCode::kInvalidArgument, "low-latency mode is not started");
    return resident_->run(inputs[0], in_where[0] == MemoryLocation::kDevice, in_shapes[0], outputs[0],
                          out_where[0] == MemoryLocation::kDevice, out_shapes[0]);
  }
  void stop_low_latency() override { resident_.reset(); }
  std::string low_latency_json() const override { return resident_ ? resident_->json() : "{}"; }

 private:
  Status run_layers(const PointerTables& t, cudaStream_t s, std::vector<LayerTiming>* timings,
                    const AfterLayer* after_layer);
  Status observe_layer(size_t l, const PointerTables& t, cudaStream_t s, const AfterLayer& after_layer);
  Status capture(const PointerTables& t, cudaStream_t s);
  void drop_graph() {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    graph_exec_ = nullptr;
  }

  std::shared_ptr<const CudaEngine> engine_;
  const EngineModel& model_;
  uint8_t* arena_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  std::vector<std::unique_ptr<cuda::CudaKernel>> kernels_;  // null for views
  std::vector<cudaEvent_t> events_;                         // profiling: one before each layer, one at the end
  std::vector<std::vector<size_t>> output_bytes_;           // per layer and output, at the current shapes
  std::vector<std::vector<uint8_t>> observed_;              // observing: host copies of one layer's outputs
  bool use_graph_ = false;
  cudaGraphExec_t graph_exec_ = nullptr;
  std::unique_ptr<cuda::ResidentMlp> resident_;
};

class CudaEngine final : public BackendEngine, public std::enable_shared_from_this<CudaEngine> {
 public:
  ~CudaEngine() override {
    if (weights) cudaFree(weights);
  }
  Result<std::unique_ptr<BackendContext>> create_context(const EngineModel& model) const override {
    auto c = std::make_unique<CudaContext>(shared_from_this(), model);
    Status s = c->init();
    if (!s.is_ok()) return s;
    return std::unique_ptr<BackendContext>(std::move(c));
  }
  HostInputForm host_input_form(const Graph& g, size_t layer, int input) const override {
    const cuda::KernelDef* def = layer < kernels.size() ? kernels[layer] : nullptr;
    return def && def->host_input_form ? def->host_input_form(g.nodes[layer], g, input) : HostInputForm{};
  }
  std::string describe_json() const override {
    return nlohmann::json{{"gpu", device.name},
                          {"compute_capability", device.compute_capability()},
                          {"sm_count", device.sm_count},
                          {"cuda_runtime", device.cuda_runtime},
                          {"cuda_driver", device.cuda_driver},
                          {"weight_bytes_on_device", weight_bytes}}
        .dump();
  }

  cuda::DeviceInfo device;
  std::vector<const cuda::KernelDef*> kernels;  // per layer, null for views
  uint8_t* weights = nullptr;                   // every constant, 256-byte aligned slices
  uint64_t weight_bytes = 0;
  std::vector<const void*> constant_ptrs;       // per value: device address, or null
};

CudaContext::~CudaContext() {
  resident_.reset();  // first: frees below must not wait on a kernel that never ends
  drop_graph();
  kernels_.clear();
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
  if (stream_) cudaStreamDestroy(stream_);
  if (workspace_) cudaFree(workspace_);
  if (arena_) cudaFree(arena_);
}

const void* CudaContext::constant(int v) const { return engine_->constant_ptrs[v]; }

Status CudaContext::start_low_latency(int max_rows) {
  resident_.reset();
  auto plan = cuda::plan_resident_mlp(model_.graph, engine_->constant_ptrs);
  if (!plan.is_ok()) return plan.status();
  auto resident = std::make_unique<cuda::ResidentMlp>();
  Status s = resident->start(*plan, max_rows);
  if (!s.is_ok()) return s;
  resident_ = std::move(resident);
  return Status::ok();
}

Status CudaContext::init() {
  const uint64_t arena = std::max<uint64_t>(model_.arena_bytes, 256);
  Status s = check(cudaMalloc(reinterpret_cast<void**>(&arena_), arena),
                   fmt::format("allocating the {}-byte activation arena on the GPU", arena));
  if (!s.is_ok()) return s;
  // A blocking stream: work queued on the legacy default stream stays ordered with it.
  s = check(cudaStreamCreate(&stream_), "cudaStreamCreate");
  if (!s.is_ok()) return s;
  const Graph& g = model_.graph;
  kernels_.resize(g.nodes.size());
  output_bytes_.resize(g.nodes.size());
  for (size_t l = 0; l < g.nodes.size(); ++l) {
    const cuda::KernelDef* def = engine_->kernels[l];
    if (!def) continue;
    const Node& n = g.nodes[l];
    cuda::KernelInit init{n, g, {}, {}, engine_->device};
    for (int v : n.inputs) {
      const bool c = g.is_constant(v);
      init.constants.push_back(c ? &*g.values[v].constant : nullptr);
      init.device_constants.push_back(c ? engine_->constant_ptrs[v] : nullptr);
    }
    auto k = def->create(init);
    if (!k.is_ok()) return std::move(k).take_status().with_context(layer_context(n));
    kernels_[l] = std::move(k).value();
  }
  return Status::ok();
}

Status CudaContext::reshape(size_t l, const std::vector<TensorDesc>& in, const std::vector<TensorDesc>& out) {
  drop_graph();
  Status s = kernels_[l]->reshape(in, out);
  if (!s.is_ok()) return s;
  output_bytes_[l].clear();
  for (const TensorDesc& d : out) output_bytes_[l].push_back(static_cast<size_t>(volume(d.shape)) * dtype_size(d.dtype));
  const size_t need = kernels_[l]->workspace_bytes();
  if (need > workspace_bytes_) {
    // cudaFree waits for the device, so no queued layer still uses the old workspace.
    if (workspace_) cudaFree(workspace_);
    workspace_ = nullptr;
    workspace_bytes_ = 0;
    s = check(cudaMalloc(&workspace_, need), fmt::format("allocating a {}-byte GPU workspace", need));
    if (!s.is_ok()) return s;
    workspace_bytes_ = need;
  }
  return Status::ok();
}

Status CudaContext::run_layers(const PointerTables& t, cudaStream_t s, std::vector<LayerTiming>* timings,
                               const AfterLayer* after_layer) {
  const Graph& g = model_.graph;
  size_t timed = 0;
  for (size_t l = 0; l < kernels_.size(); ++l) {
    cuda::CudaKernel* k = kernels_[l].get();
    if (!k) continue;
    if (timings) {
      Status st = check(cudaEventRecord(events_[timed++], s), "cudaEventRecord");
      if (!st.is_ok()) return st;
    }
    Status st = k->enqueue(t.inputs[l].data(), t.outputs[l].data(), workspace_, s);
    if (!st.is_ok()) return std::move(st).with_context(layer_context(g.nodes[l]));
    if (after_layer) {
      st = observe_layer(l, t, s, *after_layer);
      if (!st.is_ok()) return st;
    }
  }
  if (timings) return check(cudaEventRecord(events_[timed], s), "cudaEventRecord");
  return Status::ok();
}

// Waits for layer l, copies its outputs to host memory and hands them to the hook.
Status CudaContext::observe_layer(size_t l, const PointerTables& t, cudaStream_t s, const AfterLayer& after_layer) {
  const std::vector<void*>& outs = t.outputs[l];
  if (observed_.size() < outs.size()) observed_.resize(outs.size());
  std::vector<const void*> host(outs.size(), nullptr);
  for (size_t i = 0; i < outs.size(); ++i) {
    if (!outs[i]) continue;
    const size_t bytes = output_bytes_[l][i];
    observed_[i].resize(std::max<size_t>(bytes, 1));
    Status st = check(cudaMemcpyAsync(observed_[i].data(), outs[i], bytes, cudaMemcpyDeviceToHost, s),
                      "copying a layer output to the host");
    if (!st.is_ok()) return std::move(st).with_context(layer_context(model_.graph.nodes[l]));
    host[i] = observed_[i].data();
  }
  Status st = check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  if (!st.is_ok()) return std::move(st).with_context(layer_context(model_.graph.nodes[l]));
  return after_layer(l, host.data());
}

Status CudaContext::capture(const PointerTables& t, cudaStream_t s) {
  Status st = check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal),
                    "starting CUDA graph capture (the stream must not be the legacy default stream)");
  if (!st.is_ok()) return st;
  st = run_layers(t, s, nullptr, nullptr);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(s, &graph);
  if (!st.is_ok()) {
    if (graph) cudaGraphDestroy(graph);
    return std::move(st).with_context("capturing a CUDA graph");
  }
  st = check(end, "ending CUDA graph capture");
  if (!st.is_ok()) return st;
  st = check(cudaGraphInstantiate(&graph_exec_, graph, 0), "instantiating the CUDA graph");
  cudaGraphDestroy(graph);
  return st;
}

Status CudaContext::enqueue(const PointerTables& t, void* stream, std::vector<LayerTiming>* timings,
                            const AfterLayer* after_layer) {
  cudaStream_t s = stream ? static_cast<cudaStream_t>(stream) : stream_;
  if (timings) {
    // Profiling runs layer by layer with events around each, never through a graph.
    size_t layers = 0;
    for (const auto& k : kernels_) layers += k != nullptr;
    while (events_.size() < layers + 1) {
      cudaEvent_t e = nullptr;
      Status st = check(cudaEventCreate(&e), "cudaEventCreate");
      if (!st.is_ok()) return st;
      events_.push_back(e);
    }
    Status st = run_layers(t, s, timings, after_layer);
    if (!st.is_ok()) return st;
    st = check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    if (!st.is_ok()) return st;
    size_t i = 0;
    for (size_t l = 0; l < kernels_.size(); ++l) {
      if (!kernels_[l]) continue;
      float ms = 0;
      st = check(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]), "cudaEventElapsedTime");
      if (!st.is_ok()) return st;
      timings->push_back({model_.graph.nodes[l].name, ms});
      ++i;
    }
    return Status::ok();
  }
  // Observing runs layer by layer too (each waited for and copied out), never through a graph.
  if (!use_graph_ || after_layer) return run_layers(t, s, nullptr, after_layer);
  if (!graph_exec_) {
    Status st = capture(t, s);
    if (!st.is_ok()) return st;
  }
  return check(cudaGraphLaunch(graph_exec_, s), "launching the CUDA graph");
}

// The GPU recorded in the engine, as DeviceInfo.
Result<cuda::DeviceInfo> built_for(const EngineModel& m) {
  auto j = nlohmann::json::parse(m.device_json, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("gpu"))
    return Status(StatusCode::kCorruptEngine, "CUDA engine does not record the GPU it was built for");
  cuda::DeviceInfo d;
  d.name = j.value("gpu", "");
  d.cc_major = j.value("cc_major", 0);
  d.cc_minor = j.value("cc_minor", 0);
  d.sm_count = j.value("sm_count", 0);
  d.cuda_runtime = j.value("cuda_runtime", 0);
  return d;
}

}  // namespace

std::string cuda::device_json(const DeviceInfo& d) {
  return nlohmann::json{{"gpu", d.name},        {"cc_major", d.cc_major},         {"cc_minor", d.cc_minor},
                        {"sm_count", d.sm_count}, {"cuda_runtime", d.cuda_runtime}, {"cuda_driver", d.cuda_driver}}
      .dump();
}

Result<std::shared_ptr<const BackendEngine>> load_cuda_backend(const EngineModel& model) {
  auto want = built_for(model);
  if (!want.is_ok()) return want.status();
  auto found = cuda::current_device();
  if (!found.is_ok())
    return Status(StatusCode::kUnsupported, fmt::format("engine was built for {}, but {}", want->describe(),
                                                        found.status().message()));
  if (found->name != want->name || found->cc_major != want->cc_major || found->cc_minor != want->cc_minor ||
      found->sm_count != want->sm_count)
    return Status(StatusCode::kVersionMismatch,
                  fmt::format("engine was built for {}, but this GPU is {}; rebuild the engine on this GPU",
                              want->describe(), found->describe()));
  if (found->cuda_runtime / 1000 != want->cuda_runtime / 1000)
    return Status(StatusCode::kVersionMismatch,
                  fmt::format("engine was built with CUDA {}.{}, this runtime uses CUDA {}.{}", want->cuda_runtime / 1000,
                              want->cuda_runtime % 1000 / 10, found->cuda_runtime / 1000,
                              found->cuda_runtime % 1000 / 10));
  auto e = std::make_shared<CudaEngine>();
  e->device = *found;
  const Graph& g = model.graph;
  std::vector<uint64_t> offset(g.values.size(), UINT64_MAX);
  for (const Node& n : g.nodes) {
    const cuda::KernelDef* def = nullptr;
    if (n.kernel != kViewKernel) {
      def = cuda::KernelRegistry::instance().find(n.kernel);
      if (!def) return Status(StatusCode::kUnsupported, "unknown CUDA kernel '" + n.kernel + "'").with_context(n.describe());
      Status s = def->supports ? def->supports(n, g) : Status::ok();
      if (!s.is_ok()) return std::move(s).with_context(layer_context(n));
      for (int v : n.inputs)
        if (g.is_constant(v) && offset[v] == UINT64_MAX) {
          offset[v] = e->weight_bytes;
          e->weight_bytes += (g.values[v].constant->nbytes() + 255) / 256 * 256;
        }
    }
    e->kernels.push_back(def);
  }
  e->constant_ptrs.assign(g.values.size(), nullptr);
  if (e->weight_bytes > 0) {
    Status s = check(cudaMalloc(reinterpret_cast<void**>(&e->weights), e->weight_bytes),
                     fmt::format("allocating {} bytes of weights on the GPU", e->weight_bytes));
    if (!s.is_ok()) return s;
    for (size_t v = 0; v < g.values.size(); ++v) {
      if (offset[v] == UINT64_MAX) continue;
      const Tensor& t = *g.values[v].constant;
      e->constant_ptrs[v] = e->weights + offset[v];
      s = check(cudaMemcpy(e->weights + offset[v], t.raw(), t.nbytes(), cudaMemcpyHostToDevice),
                fmt::format("uploading weight '{}'", g.values[v].name));
      if (!s.is_ok()) return s;
    }
  }
  return std::shared_ptr<const BackendEngine>(std::move(e));
}

}  // namespace kiln
