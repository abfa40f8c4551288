// The CPU backend as the runtime sees it: kernel definitions and load-time shared state per engine, a
// host arena and kernel instances per context, layers run in order on the calling thread (each kernel
// parallelizes inside with OpenMP).
#include <omp.h>

#include <chrono>
#include <cstdlib>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backends/cpu/cpu_kernel.h"
#include "runtime/backend.h"

namespace kiln {
namespace {

class CpuEngine;

class CpuContext final : public BackendContext {
 public:
  CpuContext(std::shared_ptr<const CpuEngine> engine, const EngineModel& model) : engine_(std::move(engine)), model_(model) {}
  ~CpuContext() override { std::free(arena_); }

  Status init();
  uint8_t* arena() override { return arena_; }
  const void* constant(int v) const override { return model_.graph.values[v].constant->raw(); }
  // Kernels plan for the OpenMP team they will run with (oneDNN fixes its work split when a primitive is
  // made), so reshape runs with this context's thread count, and layers are reshaped again at the next
  // enqueue when set_threads changed it since.
  Status reshape(size_t l, const std::vector<TensorDesc>& in, const std::vector<TensorDesc>& out) override {
    const int threads = apply_threads();
    planned_[l] = {in, out, threads};
    return kernels_[l]->reshape(in, out);
  }
  Status enqueue(const PointerTables& t, void*, std::vector<LayerTiming>* timings,
                 const AfterLayer* after_layer) override;
  void set_threads(int threads) override { threads_ = threads; }

 private:
  struct Planned {
    std::vector<TensorDesc> in, out;
    int threads = 0;  // 0: never reshaped
  };
  // Sets this context's OpenMP thread count on the calling thread and returns it. omp_set_num_threads is
  // per calling thread and sticks: a context with the default (0) must restore the process default
  // (OMP_NUM_THREADS or all cores, read once) after another context asked for fewer.
  int apply_threads() const {
    static const int default_threads = omp_get_max_threads();
    const int threads = threads_ > 0 ? threads_ : default_threads;
    omp_set_num_threads(threads);
    return threads;
  }

  std::shared_ptr<const CpuEngine> engine_;
  const EngineModel& model_;
  uint8_t* arena_ = nullptr;
  std::vector<std::unique_ptr<cpu::CpuKernel>> kernels_;  // null for views
  int threads_ = 0;
  std::vector<Planned> planned_;  // per layer: the last reshape's shapes and thread count
};

class CpuEngine final : public BackendEngine, public std::enable_shared_from_this<CpuEngine> {
 public:
  std::vector<const cpu::CpuKernelDef*> kernels;  // per layer, null for views
  std::vector<std::shared_ptr<const void>> shared;
  std::vector<std::vector<const Tensor*>> constants;

  std::string layer_tactics_json;  // {"layer": "load-time choice", ...} from kernels' describe()

  std::string describe_json() const override { return "{\"layer_tactics\": " + layer_tactics_json + "}"; }
  Result<std::unique_ptr<BackendContext>> create_context(const EngineModel& model) const override {
    auto c = std::make_unique<CpuContext>(shared_from_this(), model);
    Status s = c->init();
    if (!s.is_ok()) return s;
    return std::unique_ptr<BackendContext>(std::move(c));
  }
};

Status CpuContext::init() {
  const uint64_t arena = (std::max<uint64_t>(model_.arena_bytes, 64) + 63) / 64 * 64;
  arena_ = static_cast<uint8_t*>(std::aligned_alloc(64, arena));
  if (!arena_)
    return Status(StatusCode::kRuntimeError, fmt::format("cannot allocate the {}-byte activation arena", arena));
  const Graph& g = model_.graph;
  kernels_.resize(g.nodes.size());
  planned_.resize(g.nodes.size());
  for (size_t l = 0; l < g.nodes.size(); ++l) {
    if (!engine_->kernels[l]) continue;
    const Node& n = g.nodes[l];
    auto k = engine_->kernels[l]->create(cpu::KernelInit{n, g, engine_->constants[l], engine_->shared[l]});
    if (!k.is_ok()) return std::move(k).take_status().with_context(fmt::format("layer '{}' ({})", n.name, n.kernel));
    kernels_[l] = std::move(k).value();
  }
  return Status::ok();
}

Status CpuContext::enqueue(const PointerTables& t, void*, std::vector<LayerTiming>* timings,
                           const AfterLayer* after_layer) {
  const int threads = apply_threads();
  const Graph& g = model_.graph;
  for (size_t l = 0; l < kernels_.size(); ++l) {
    cpu::CpuKernel* k = kernels_[l].get();
    if (!k) continue;
    if (Planned& p = planned_[l]; p.threads != 0 && p.threads != threads) {  // set_threads changed since
      p.threads = threads;
      Status s = k->reshape(p.in, p.out);
      if (!s.is_ok()) return std::move(s).with_context(fmt::format("layer '{}' ({})", g.nodes[l].name, g.nodes[l].kernel));
    }
    std::chrono::steady_clock::time_point t0;
    if (timings) t0 = std::chrono::steady_clock::now();
    Status s = k->run(t.inputs[l].data(), t.outputs[l].data());
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("layer '{}' ({})", g.nodes[l].name, g.nodes[l].kernel));
    if (timings)
      timings->push_back({g.nodes[l].name,
                          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()});
    if (after_layer) {
      s = (*after_layer)(l, t.outputs[l].data());
      if (!s.is_ok()) return s;
    }
  }
  return Status::ok();
}

}  // namespace

Result<std::shared_ptr<const BackendEngine>> load_cpu_backend(const EngineModel& model) {
  auto e = std::make_shared<CpuEngine>();
  const Graph& g = model.graph;
  nlohmann::json tactics = nlohmann::json::object();
  for (const Node& n : g.nodes) {
    std::vector<const Tensor*> consts;
    for (int v : n.inputs) consts.push_back(g.is_constant(v) ? &*g.values[v].constant : nullptr);
    const cpu::CpuKernelDef* def = nullptr;
    std::shared_ptr<const void> shared;
    if (n.kernel != kViewKernel) {
      def = cpu::KernelRegistry::instance().find(n.kernel);
      if (!def) return Status(StatusCode::kUnsupported, "unknown kernel '" + n.kernel + "'").with_context(n.describe());
      Status s = def->supports ? def->supports(n, g) : Status::ok();
      if (!s.is_ok()) return std::move(s).with_context(fmt::format("layer '{}' ({})", n.name, n.kernel));
      if (def->prepare) {
        auto r = def->prepare(n, g);
        if (!r.is_ok()) return std::move(r).take_status().with_context(fmt::format("layer '{}' ({})", n.name, n.kernel));
        shared = std::move(r).value();
      }
    }
    if (def && def->describe && shared) tactics[n.name] = def->describe(shared.get());
    e->kernels.push_back(def);
    e->shared.push_back(std::move(shared));
    e->constants.push_back(std::move(consts));
  }
  e->layer_tactics_json = tactics.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return std::shared_ptr<const BackendEngine>(std::move(e));
}

}  // namespace kiln
