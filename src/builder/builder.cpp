// The build pipeline: import -> profiles -> passes -> shapes -> kernels (+ weight packing) -> memory
// plan -> engine file.
#include "kiln/builder.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backends/cpu/cpu_target.h"
#include "builder/kernel_assignment.h"
#include "builder/memory_planner.h"
#include "builder/shape_inference.h"
#include "engine/engine_model.h"
#include "onnx/importer.h"
#include "passes/pass.h"

namespace kiln {
namespace {

std::string flags_json(const BuilderConfig& c, const std::vector<std::string>& passes_run) {
  nlohmann::json j;
  j["passes_run"] = passes_run;
  j["device"] = c.device;
  j["disabled_passes"] = std::vector<std::string>(c.disabled_passes.begin(), c.disabled_passes.end());
  nlohmann::json prof = nlohmann::json::object();
  for (const auto& [name, p] : c.profiles) prof[name] = {{"min", p.min}, {"opt", p.opt}, {"max", p.max}};
  j["profiles"] = prof;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Status check_config(const BuilderConfig& c) {
  if (c.device != "cpu")
    return Status(StatusCode::kUnsupported,
                  fmt::format("device '{}' is not available in this build (supported: cpu)", c.device));
  std::set<std::string> known = {kWeightPrepackingPass, kViewAliasingPass, kMemoryReusePass};
  for (const auto* p : PassRegistry::instance().ordered()) known.insert(p->name);
  for (const auto& d : c.disabled_passes)
    if (!known.count(d)) {
      std::string all;
      for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
      return Status(StatusCode::kInvalidArgument, fmt::format("unknown pass '{}' (passes: {})", d, all));
    }
  return Status::ok();
}

Result<BuildOutput> build(Result<Graph> imported, const BuilderConfig& config) {
  const auto t0 = std::chrono::steady_clock::now();
  Status s = check_config(config);
  if (!s.is_ok()) return s;
  if (!imported.is_ok()) return imported.status();
  EngineModel m;
  m.graph = std::move(imported).value();
  Graph& g = m.graph;
  BuildSummary summary;
  summary.onnx_nodes = static_cast<int>(g.nodes.size());

  auto profiles = resolve_profiles(g, config.profiles);
  if (!profiles.is_ok()) return profiles.status();
  m.profiles = std::move(profiles).value();

  std::vector<uint64_t> max_bytes;
  PassContext ctx;
  ctx.disabled = config.disabled_passes;
  // Shapes first (the fusion rules need ranks and weight shapes), then again after rewriting.
  s = run_pass(g, "constant_folding", ctx);
  if (!s.is_ok()) return s;
  s = annotate_static_shapes(g, m.profiles, &max_bytes);
  if (!s.is_ok()) return s;
  s = run_passes(g, ctx, &summary.passes_run);
  if (!s.is_ok()) return s;
  s = assign_cpu_kernels(g, ctx);
  if (!s.is_ok()) return s;
  g.compact();
  s = annotate_static_shapes(g, m.profiles, &max_bytes);
  if (!s.is_ok()) return std::move(s).with_context("after optimization");
  s = plan_memory(g, max_bytes, !ctx.disabled.count(kMemoryReusePass), &m.storage, &m.arena_bytes);
  if (!s.is_ok()) return s;

  m.kiln_version = kiln::version();
  m.device = config.device;
  m.target = cpu::target_isa();
  for (const char* step : {kWeightPrepackingPass, kViewAliasingPass, kMemoryReusePass})
    if (!ctx.disabled.count(step)) summary.passes_run.push_back(step);
  m.build_flags_json = flags_json(config, summary.passes_run);

  BuildOutput out;
  out.engine = serialize_engine(m);
  for (const Node& n : g.nodes) (n.kernel == kViewKernel ? summary.view_layers : summary.layers)++;
  for (size_t v = 0; v < g.values.size(); ++v)
    if (m.storage[v].kind == StorageKind::kConstant) summary.weight_bytes += g.values[v].constant->nbytes();
  summary.arena_bytes = m.arena_bytes;
  summary.build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  out.summary = std::move(summary);
  return out;
}

}  // namespace

Result<BuildOutput> build_engine_from_bytes(const std::string& onnx_bytes, const std::string& base_dir,
                                            const BuilderConfig& config) {
  return build(import_onnx_bytes(onnx_bytes, base_dir), config);
}

Result<BuildOutput> build_engine_from_file(const std::string& onnx_path, const BuilderConfig& config) {
  return build(import_onnx_file(onnx_path), config);
}

std::vector<PassInfo> list_passes() {
  std::vector<PassInfo> out;
  for (const auto* p : PassRegistry::instance().ordered()) out.push_back({p->name, p->description});
  out.push_back({kWeightPrepackingPass, "pack constant weights into the CPU kernel's preferred layout at build time"});
  out.push_back({kViewAliasingPass, "run Reshape/Flatten/Squeeze/Unsqueeze/Identity/Dropout as zero-copy views"});
  out.push_back({kMemoryReusePass, "share activation memory between tensors whose lifetimes do not overlap"});
  return out;
}

}  // namespace kiln
