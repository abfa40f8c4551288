// CUDA build steps: record the GPU the engine is for, time each tunable layer's tactics on it at the
// profile's opt shape (reusing and extending the timing cache), and note device memory use.
#include <fmt/format.h>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/timing_cache.h"
#include "builder/kernel_assignment.h"
#include "builder/shape_inference.h"
#include "engine/engine_model.h"
#include "kiln/builder.h"
#include "kiln/gpu.h"

namespace kiln {

namespace {

std::vector<TensorDesc> descs(const std::vector<TensorDesc>& all, const std::vector<int>& ids) {
  std::vector<TensorDesc> out;
  for (int v : ids) out.push_back(v == kNoValue ? TensorDesc{} : all[v]);
  return out;
}

// Device memory in use now; 0 when it cannot be read (the figure is informational).
size_t device_memory_used() {
  auto used = gpu::device_memory_used();
  return used.is_ok() ? used.value() : 0;
}

}  // namespace

Status finish_cuda_build(EngineModel& m, const BuilderConfig& config, BuildSummary* summary) {
  auto dev = cuda::current_device();
  if (!dev.is_ok()) return dev.status();
  m.target = dev->describe();
  m.device_json = cuda::device_json(*dev);
  Graph& g = m.graph;

  std::vector<Dims> mins, opts, maxs;
  for (const ShapeProfile& p : m.profiles) {
    mins.push_back(p.min);
    opts.push_back(p.opt);
    maxs.push_back(p.max);
  }
  std::vector<TensorDesc> at_min, at_opt, at_max;
  for (auto [shapes, out] : {std::pair{&mins, &at_min}, std::pair{&opts, &at_opt}, std::pair{&maxs, &at_max}}) {
    Status s = infer_concrete_shapes(g, *shapes, out);
    if (!s.is_ok()) return std::move(s).with_context("shapes for tactic timing");
  }

  cuda::TimingCache cache;
  if (!config.timing_cache_file.empty()) {
    const std::string warning = cache.load(config.timing_cache_file);
    if (!warning.empty()) fmt::print(stderr, "kiln: warning: {}\n", warning);
  }
  cudaStream_t stream = nullptr;
  Status s = cuda::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  if (!s.is_ok()) return s;
  size_t peak = device_memory_used();
  for (Node& n : g.nodes) {
    if (n.kernel == kViewKernel) continue;
    const cuda::KernelDef* def = cuda::KernelRegistry::instance().find(n.kernel);
    if (!def || !def->tune) continue;
    cuda::TuneContext ctx{descs(at_min, n.inputs), descs(at_opt, n.inputs), descs(at_max, n.inputs),
                          descs(at_min, n.outputs), descs(at_opt, n.outputs), descs(at_max, n.outputs),
                          *dev, stream, &cache, config.verbose};
    s = def->tune(n, g, ctx);
    peak = std::max(peak, device_memory_used());
    if (!s.is_ok()) {
      cudaStreamDestroy(stream);
      return std::move(s).with_context(fmt::format("timing tactics for layer '{}' ({})", n.name, n.kernel));
    }
  }
  cudaStreamDestroy(stream);
  summary->peak_device_memory = peak;
  summary->tactics_timed = cache.timed();
  summary->timing_cache_hits = cache.hits();
  if (!config.timing_cache_file.empty()) {
    s = cache.save(config.timing_cache_file);
    if (!s.is_ok()) return std::move(s).with_context("--timingCacheFile");
  }
  return Status::ok();
}

}  // namespace kiln
