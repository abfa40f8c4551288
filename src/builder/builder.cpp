// The build pipeline: import -> profiles -> passes -> shapes -> kernels (+ weight packing) -> memory
// plan -> engine file.
#include "kiln/builder.h"

#include <chrono>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "backends/cpu/cpu_target.h"
#include "builder/kernel_assignment.h"
#include "builder/memory_planner.h"
#include "builder/precision.h"
#include "kiln/gpu.h"
#include "builder/shape_inference.h"
#include "engine/engine_model.h"
#include "onnx/importer.h"
#include "passes/pass.h"
#include "quant/calibrate.h"
#include "quant/calibration_cache.h"
#include "quant/calibrator.h"
#include "quant/quantize_graph.h"

namespace kiln {
namespace {

std::string flags_json(const BuilderConfig& c, const std::vector<std::string>& passes_run) {
  nlohmann::json j;
  j["passes_run"] = passes_run;
  j["device"] = c.device;
  j["fp16"] = c.fp16;
  j["bf16"] = c.bf16;
  j["tf32"] = c.tf32;
  j["int8"] = c.int8.enabled;
  j["best"] = c.best;
  if (c.int8.enabled) {
    j["calib_algo"] = c.int8.algorithm;
    j["layer_precisions"] = c.int8.layer_precisions;
  }
  auto names = [](const std::vector<DataType>& v) {
    std::vector<std::string> out;
    for (DataType d : v) out.emplace_back(dtype_name(d));
    return out;
  };
  j["input_formats"] = names(c.input_formats);
  j["output_formats"] = names(c.output_formats);
  j["disabled_passes"] = std::vector<std::string>(c.disabled_passes.begin(), c.disabled_passes.end());
  nlohmann::json prof = nlohmann::json::object();
  for (const auto& [name, p] : c.profiles) prof[name] = {{"min", p.min}, {"opt", p.opt}, {"max", p.max}};
  j["profiles"] = prof;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Status check_int8_config(const BuilderConfig::Int8& q) {
  auto algo = quant::calib_algo_from_name(q.algorithm);
  if (!algo.is_ok()) return std::move(algo).take_status().with_context("--calibAlgo");
  if (q.batches < 1 || q.batch_size < 1)
    return Status(StatusCode::kInvalidArgument, fmt::format("calibration needs at least one batch of one sample "
                                                            "(batches {}, batch size {})", q.batches, q.batch_size));
  if (!(q.percentile > 0 && q.percentile <= 100))
    return Status(StatusCode::kInvalidArgument, fmt::format("percentile {} is not in (0, 100]", q.percentile));
  return Status::ok();
}

// INT8: plan the layers, get activation scales (from the cache, else by calibrating), rewrite the graph.
Status quantize_to_int8(Graph& g, const std::vector<ShapeProfile>& profiles, const BuilderConfig& c,
                        BuildSummary* summary) {
  auto plan = quant::plan_int8(g, c.int8.layer_precisions);
  if (!plan.is_ok()) return plan.status();
  summary->int8_notes = plan->kept_float;
  if (plan->layers.empty()) {
    summary->warnings.push_back("--int8: no layer runs in INT8 (see the layers kept in float)");
    return Status::ok();
  }
  const quant::CalibAlgo algo = quant::calib_algo_from_name(c.int8.algorithm).value();
  const std::string& cache_path = c.int8.cache_file;
  std::map<std::string, float> scales;
  if (!c.int8.scales.empty()) {
    scales = c.int8.scales;
    summary->calibration = "scales given by the caller";
  } else if (!cache_path.empty() && std::filesystem::exists(cache_path)) {
    auto cache = quant::read_calibration_cache_file(cache_path, algo, &summary->warnings);
    if (!cache.is_ok()) return cache.status();
    scales = std::move(cache->scales);
    summary->calibration = fmt::format("scales from calibration cache {}", cache_path);
  } else {
    auto cal = quant::calibrate(g, profiles, plan->scaled_values, c.int8);
    if (!cal.is_ok()) return std::move(cal).take_status().with_context("INT8 calibration");
    scales = std::move(cal->scales);
    summary->calibration = cal->summary;
    if (!cache_path.empty()) {
      quant::CalibrationCache cache;
      cache.version = quant::kCalibrationCacheVersion;
      cache.algorithm = quant::trt_algo_name(algo);
      cache.scales = scales;
      Status s = quant::write_calibration_cache_file(cache_path, cache);
      if (!s.is_ok()) return s;
      summary->calibration += ", written to " + cache_path;
    }
  }
  for (int l : plan->layers) summary->int8_layer_names.push_back(g.nodes[l].name);
  Status s = quant::apply_int8(g, *plan, scales);
  if (!s.is_ok()) return s;
  summary->int8_layers = static_cast<int>(plan->layers.size());
  summary->int8_scales = scales;
  return Status::ok();
}

Status check_config(const BuilderConfig& c) {
  if (c.device != "cpu" && c.device != "cuda")
    return Status(StatusCode::kInvalidArgument, fmt::format("unknown device '{}' (devices: cpu, cuda)", c.device));
  if (c.device == "cpu") {
    if (c.fp16) return Status(StatusCode::kUnsupported, "FP16 layers need --device=cuda (the CPU backend runs FP32)");
    for (const auto* formats : {&c.input_formats, &c.output_formats})
      for (DataType f : *formats)
        if (f != DataType::kFloat32)
          return Status(StatusCode::kUnsupported, "CPU engines take FP32 IO only (IO formats need --device=cuda)");
  } else {
    if (c.bf16)
      return Status(StatusCode::kUnsupported,
                    "BF16 layers run on the CPU backend only (--device=cpu), CUDA engines take --fp16");
    // Kernels are chosen and timed on the GPU the engine is for, so building needs one, as in TensorRT.
    auto gpu = gpu::describe_device();
    if (!gpu.is_ok()) return std::move(gpu).take_status().with_context("--device=cuda");
  }
  for (const auto* formats : {&c.input_formats, &c.output_formats})
    for (DataType f : *formats)
      if (f != DataType::kFloat32 && f != DataType::kFloat16)
        return Status(StatusCode::kUnsupported,
                      fmt::format("IO format {} is not supported (fp32 or fp16)", dtype_name(f)));
  if (c.int8.enabled) {
    Status s = check_int8_config(c.int8);
    if (!s.is_ok()) return s;
  }
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

}  // namespace

Status lower_to_kernels(EngineModel& m, bool on_gpu, const PassContext& ctx) {
  Graph& g = m.graph;
  Status s = on_gpu ? assign_cuda_kernels(g, ctx) : assign_cpu_kernels(g, ctx);
  if (!s.is_ok()) return s;
  g.compact();
  std::vector<uint64_t> max_bytes;
  s = annotate_static_shapes(g, m.profiles, &max_bytes);
  if (!s.is_ok()) return std::move(s).with_context("after optimization");
  return plan_memory(g, max_bytes, !ctx.disabled.count(kMemoryReusePass), &m.storage, &m.arena_bytes);
}

namespace {

Result<BuildOutput> build(Result<Graph> imported, const BuilderConfig& config) {
  const auto t0 = std::chrono::steady_clock::now();
  Status s = check_config(config);
  if (!s.is_ok()) return s;
  if (!imported.is_ok()) return imported.status();
  EngineModel m;
  m.graph = std::move(imported).value();
  Graph& g = m.graph;
  const bool on_gpu = config.device == "cuda";
  BuildSummary summary;
  summary.onnx_nodes = static_cast<int>(g.nodes.size());

  auto profiles = resolve_profiles(g, config.profiles);
  if (!profiles.is_ok()) return profiles.status();
  m.profiles = std::move(profiles).value();

  std::vector<uint64_t> max_bytes;
  PassContext ctx;
  ctx.disabled = config.disabled_passes;
  ctx.device = config.device;
  ctx.int8 = config.int8.enabled;
  // Shapes first (the fusion rules need ranks and weight shapes), then again after rewriting.
  s = run_pass(g, "constant_folding", ctx);
  if (!s.is_ok()) return s;
  s = annotate_static_shapes(g, m.profiles, &max_bytes);
  if (!s.is_ok()) return s;
  s = run_passes(g, ctx, &summary.passes_run);
  if (!s.is_ok()) return s;
  if (config.int8.enabled) {
    s = quantize_to_int8(g, m.profiles, config, &summary);
    if (!s.is_ok()) return s;
    s = annotate_static_shapes(g, m.profiles, &max_bytes);
    if (!s.is_ok()) return std::move(s).with_context("after the INT8 rewrite");
  }
  if (!on_gpu && config.bf16) summary.bf16_layers = mark_cpu_bf16_layers(g);
  if (!on_gpu && config.tf32) mark_cpu_tf32_layers(g);
  if (on_gpu) {
    s = apply_precision(g, config);
    if (!s.is_ok()) return s;
    s = annotate_static_shapes(g, m.profiles, &max_bytes);
    if (!s.is_ok()) return std::move(s).with_context("after precision assignment");
    bool changed = false;
    s = fix_output_precision(g, config, &changed);
    if (!s.is_ok()) return s;
    if (changed) {
      s = annotate_static_shapes(g, m.profiles, &max_bytes);
      if (!s.is_ok()) return std::move(s).with_context("after output format casts");
    }
  }
  s = lower_to_kernels(m, on_gpu, ctx);
  if (!s.is_ok()) return s;

  m.kiln_version = kiln::version();
  m.device = config.device;
  if (on_gpu) {
    s = finish_cuda_build(m, config, &summary);
    if (!s.is_ok()) return s;
  } else {
    m.target = cpu::target_isa();
  }
  summary.target = m.target;
  for (const char* step : {kWeightPrepackingPass, kViewAliasingPass, kMemoryReusePass})
    if (!ctx.disabled.count(step)) summary.passes_run.push_back(step);
  m.build_flags_json = flags_json(config, summary.passes_run);

  BuildOutput out;
  out.engine = serialize_engine(m);
  for (const Node& n : g.nodes) (n.kernel == kViewKernel ? summary.view_layers : summary.layers)++;
  summary.weight_bytes = m.weight_bytes();
  summary.arena_bytes = m.arena_bytes;
  summary.build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  out.summary = std::move(summary);
  return out;
}

// Median execute() time of an engine at its profiles' opt shapes, random inputs, on its own device.
Result<double> time_at_opt(const std::vector<uint8_t>& bytes) {
  auto engine = Runtime().deserialize_engine(bytes);
  if (!engine.is_ok()) return engine.status();
  auto ctx = (*engine)->create_execution_context();
  if (!ctx.is_ok()) return ctx.status();
  const bool on_gpu = (*engine)->device() == "cuda";
  ExecutionContext& c = **ctx;
  for (int i = 0; i < (*engine)->num_io_tensors(); ++i) {
    const std::string& name = (*engine)->io_tensor_name(i);
    auto prof = (*engine)->profile_shapes(name);
    if (prof.is_ok()) {
      Status s = c.set_input_shape(name, prof->opt);
      if (!s.is_ok()) return s;
    }
  }
  std::vector<std::vector<uint8_t>> host;
  std::vector<void*> device;
  struct Free {
    std::vector<void*>* p;
    ~Free() {
      for (void* d : *p) (void)gpu::device_free(d);
    }
  } free_device{&device};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  for (int i = 0; i < (*engine)->num_io_tensors(); ++i) {
    const std::string& name = (*engine)->io_tensor_name(i);
    auto shape = c.tensor_shape(name);
    if (!shape.is_ok()) return shape.status();
    const size_t n = static_cast<size_t>(volume(*shape)) * dtype_size((*engine)->tensor_dtype(name));
    auto& h = host.emplace_back(std::max<size_t>(n, 4));
    for (size_t k = 0; k + 4 <= h.size(); k += 4) {
      const float v = uni(rng);
      std::memcpy(&h[k], &v, 4);
    }
    void* addr = h.data();
    if (on_gpu) {
      auto d = gpu::device_alloc(h.size());
      if (!d.is_ok()) return d.status();
      device.push_back(*d);
      Status s = gpu::copy_to_device_async(*d, h.data(), h.size(), nullptr);
      if (s.is_ok()) s = gpu::device_synchronize();
      if (!s.is_ok()) return s;
      addr = *d;
    }
    Status s = c.set_tensor_address(name, addr);
    if (!s.is_ok()) return s;
  }
  std::vector<double> ms;
  for (int i = 0; i < 40; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    Status s = c.execute();
    if (!s.is_ok()) return s;
    if (i >= 10) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + ms.size() / 2, ms.end());
  return ms[ms.size() / 2];
}

// --best: starts from every INT8-capable layer in INT8 and moves a layer to float (FP16 on CUDA) when
// that makes the whole engine faster at the opt shape. Scales are computed once.
Result<BuildOutput> build_best(const Graph& imported, const BuilderConfig& config) {
  BuilderConfig c = config;
  c.best = false;
  if (c.device == "cuda") c.fp16 = true;
  auto current = build(imported, c);
  if (!c.int8.enabled || !current.is_ok() || current->summary.int8_layer_names.empty()) return current;
  const BuildSummary first = current->summary;
  c.int8.scales = first.int8_scales;
  auto t = time_at_opt(current->engine);
  if (!t.is_ok()) return std::move(t).take_status().with_context("--best: timing the INT8 engine");
  std::vector<std::string> choices;
  const char* float_name = c.device == "cuda" ? "fp16" : "fp32";
  for (const std::string& layer : first.int8_layer_names) {
    BuilderConfig trial = c;
    trial.int8.layer_precisions.emplace_back(layer, float_name);
    auto alt = build(imported, trial);
    if (!alt.is_ok()) return alt.status();
    auto ta = time_at_opt(alt->engine);
    if (!ta.is_ok()) return std::move(ta).take_status().with_context("--best: timing " + layer + " in " + float_name);
    const bool switch_to_float = *ta < 0.98 * *t;  // a 2% margin keeps noise from flipping choices
    choices.push_back(fmt::format("{}: engine {:.4f} ms with it in INT8, {:.4f} ms in {} -> {}", layer, *t, *ta,
                                  float_name, switch_to_float ? float_name : "int8"));
    if (switch_to_float) {
      c = trial;
      current = std::move(alt);
      t = ta;
    }
  }
  current->summary.calibration = first.calibration;
  current->summary.best_choices = std::move(choices);
  return current;
}

Result<BuildOutput> build_entry(Result<Graph> imported, const BuilderConfig& config) {
  if (!config.best || !imported.is_ok()) return build(std::move(imported), config);
  return build_best(*imported, config);
}

}  // namespace

Result<BuildOutput> build_engine_from_bytes(const std::string& onnx_bytes, const std::string& base_dir,
                                            const BuilderConfig& config) {
  return build_entry(import_onnx_bytes(onnx_bytes, base_dir), config);
}

Result<BuildOutput> build_engine_from_file(const std::string& onnx_path, const BuilderConfig& config) {
  return build_entry(import_onnx_file(onnx_path), config);
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
