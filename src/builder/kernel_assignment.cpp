#include "builder/kernel_assignment.h"

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#ifdef KILN_WITH_CUDA
#include "backends/cuda/cuda_kernel.h"
#endif
#include "engine/engine_model.h"
#include "ops/op.h"

namespace kiln {
namespace {

// A view op can alias when nothing else it outputs is used, and, if its result is a graph output,
// when the bytes it would alias belong to a plain activation no other graph output has claimed.
bool can_alias(const Graph& g, const Node& n, const std::vector<std::vector<int>>& consumers,
               const std::vector<int>& view_of, std::vector<char>& claimed) {
  if (n.inputs.empty() || n.inputs[0] == kNoValue) return false;
  for (size_t k = 1; k < n.outputs.size(); ++k)
    if (!consumers[n.outputs[k]].empty() || g.is_graph_output(n.outputs[k])) return false;
  if (!g.is_graph_output(n.outputs[0])) return true;
  int root = n.inputs[0];
  while (view_of[root] >= 0) root = view_of[root];
  if (g.is_graph_input(root) || g.is_constant(root) || g.is_graph_output(root) || claimed[root]) return false;
  claimed[root] = 1;
  return true;
}

// Assigns from one backend's registry; Def is cpu::CpuKernelDef or cuda::KernelDef.
template <class Def>
Status assign_from(Graph& g, const PassContext& ctx, const char* device) {
  const auto& registry = KernelRegistryOf<Def>::instance();
  const auto consumers = g.consumers();
  std::vector<int> view_of(g.values.size(), -1);
  std::vector<char> claimed(g.values.size(), 0);
  const bool aliasing = !ctx.disabled.count(kViewAliasingPass);
  std::vector<std::string> failures;
  for (Node& n : g.nodes) {
    n.kernel.clear();
    const OpDef* def = OpRegistry::instance().find(n.domain, n.op_type);
    if (def && def->is_view && aliasing && can_alias(g, n, consumers, view_of, claimed)) {
      n.kernel = kViewKernel;
      view_of[n.outputs[0]] = n.inputs[0];
      continue;
    }
    std::string reasons;
    for (const Def* k : registry.candidates(n.domain, n.op_type)) {
      Status s = k->supports ? k->supports(n, g) : Status::ok();
      if (s.is_ok()) {
        n.kernel = k->name;
        break;
      }
      reasons += fmt::format("\n    {}: {}", k->name, s.to_string());
    }
    if (n.kernel.empty()) {
      failures.push_back(fmt::format("{}: no {} kernel can run it{}", n.describe(), device,
                                     reasons.empty() ? " (no kernel registered for this op)" : reasons));
    }
  }
  if (!failures.empty()) {
    std::string msg = fmt::format("{} layer(s) cannot run on the {}:", failures.size(), device);
    for (const auto& f : failures) msg += "\n  " + f;
    return Status(StatusCode::kUnsupported, msg);
  }
  if (!ctx.disabled.count(kWeightPrepackingPass)) {
    for (Node& n : g.nodes) {
      if (n.kernel == kViewKernel) continue;
      const Def* k = registry.find(n.kernel);
      if (!k->pack) continue;
      Status s = k->pack(n, g);
      if (!s.is_ok()) return std::move(s).with_context(n.describe() + " packing weights for " + n.kernel);
    }
  }
  return Status::ok();
}

}  // namespace

bool backend_has_kernel(const std::string& device, const std::string& domain, const std::string& op_type) {
  if (device == "cpu") return !cpu::KernelRegistry::instance().candidates(domain, op_type).empty();
#ifdef KILN_WITH_CUDA
  if (device == "cuda") return !cuda::KernelRegistry::instance().candidates(domain, op_type).empty();
#endif
  return false;
}

Status assign_cpu_kernels(Graph& g, const PassContext& ctx) { return assign_from<cpu::CpuKernelDef>(g, ctx, "CPU"); }

#ifdef KILN_WITH_CUDA
Status assign_cuda_kernels(Graph& g, const PassContext& ctx) { return assign_from<cuda::KernelDef>(g, ctx, "GPU"); }
#else
Status assign_cuda_kernels(Graph&, const PassContext&) {
  return Status(StatusCode::kUnsupported, "this build of Kiln has no CUDA backend (configure with -DKILN_CUDA=ON)");
}
Status finish_cuda_build(EngineModel&, const BuilderConfig&, BuildSummary*) {
  return Status(StatusCode::kUnsupported, "this build of Kiln has no CUDA backend (configure with -DKILN_CUDA=ON)");
}
#endif

}  // namespace kiln
