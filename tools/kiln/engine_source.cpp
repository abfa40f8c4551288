#include "engine_source.h"

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "cli_common.h"
#include "progress.h"
#include "shapes_arg.h"

namespace kiln::cli {

namespace {
// A clear "cannot open" line before the library sees the path (missing file, directory, no permission).
Status check_readable(const std::string& flag, const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status(StatusCode::kInvalidArgument, fmt::format("{}: '{}' is a directory, not a file", flag, path));
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Status(StatusCode::kNotFound, fmt::format("{}: cannot open '{}': {}", flag, path, std::strerror(errno)));
  std::fclose(f);
  return Status::ok();
}
}  // namespace

bool BuildFlags::any_build_only_flag() const {
  return !save_engine.empty() || !min_shapes.empty() || !opt_shapes.empty() || !max_shapes.empty() ||
         !disabled_passes.empty() || device != "cpu" || fp16 || bf16 || no_tf32 || best || !timing_cache_file.empty() ||
         !input_formats.empty() || !output_formats.empty() || int8 || !calib_data.empty() || !calib_cache.empty() ||
         !layer_precisions.empty() || !std::isnan(accuracy_target);
}

std::string default_profile_note() {
  return fmt::format(
      "Inputs with dynamic dims and no --minShapes/--optShapes/--maxShapes get the default profile: every "
      "dynamic dim has min 1, opt 1, max {}.",
      kDefaultMaxDim);
}

void add_build_flags(CLI::App* cmd, BuildFlags* flags) {
  cmd->add_option("--onnx", flags->onnx, "ONNX model to build")->type_name("FILE");
  cmd->add_option("--saveEngine", flags->save_engine, "Write the built engine to this file")->type_name("FILE");
  cmd->add_option("--minShapes", flags->min_shapes, "Smallest shapes of the profile, e.g. input:1x1x28x28")
      ->type_name("NAME:AxB,...");
  cmd->add_option("--optShapes", flags->opt_shapes, "Shapes kernels are tuned for, e.g. input:8192x1x28x28")
      ->type_name("NAME:AxB,...");
  cmd->add_option("--maxShapes", flags->max_shapes, "Largest shapes of the profile, e.g. input:8192x1x28x28")
      ->type_name("NAME:AxB,...");
  cmd->add_option("--device", flags->device, "Target device")->type_name("NAME")->default_str("cpu");
  cmd->add_option("--disablePass", flags->disabled_passes,
                  "Skip these optimization passes (comma-separated; see `kiln build --listPasses`)")
      ->type_name("NAME,...");
  cmd->add_flag("--fp16", flags->fp16, "Let layers run in FP16 (CUDA); engine IO stays FP32 unless IO formats say fp16");
  cmd->add_flag("--bf16", flags->bf16,
                "Let dense layer chains run in BF16 (CPU: AMX or AVX512_BF16 through oneDNN where present); engine IO "
                "stays FP32");
  cmd->add_flag("--noTF32", flags->no_tf32, "FP32 GEMMs use full FP32 math instead of TF32 tensor cores (CUDA) or split BF16 (CPU fused MLP, where KILN_FUSED_MLP_TACTIC=bf16x3 asks)");
  cmd->add_flag("--best", flags->best,
                "Per layer, the fastest of INT8 (with --calibData or --calib) and float (FP16/TF32 on CUDA, FP32 on "
                "the CPU), chosen by timing the engine at the opt shape");
  cmd->add_option("--timingCacheFile", flags->timing_cache_file,
                  "Read tactic timings from and add new ones to this file (CUDA)")
      ->type_name("FILE");
  cmd->add_option("--inputIOFormats", flags->input_formats,
                  "Engine input formats in input order, e.g. fp16:chw (fp32 or fp16, linear layouts)")
      ->type_name("FMT,...")
      ->delimiter(',');
  cmd->add_option("--outputIOFormats", flags->output_formats,
                  "Engine output formats in output order, e.g. fp16:chw")
      ->type_name("FMT,...")
      ->delimiter(',');
  cmd->add_flag("--int8", flags->int8,
                "Run GEMM layers in INT8 with scales from calibration (--calibData) or a cache (--calib)");
  cmd->add_option("--calibData", flags->calib_data,
                  "Calibration data for --int8: IDX images (plain or .gz; normalized as the model's metadata says), "
                  ".npy or raw float32 files, comma-separated")
      ->type_name("FILE,...");
  cmd->add_option("--calib", flags->calib_cache,
                  "TensorRT-format calibration cache: used when the file exists, else written after calibrating")
      ->type_name("FILE");
  cmd->add_option("--calibAlgo", flags->calib_algo, "Calibrator: percentile (default), entropy (TensorRT's "
                                                    "EntropyCalibration2), minmax")
      ->check(CLI::IsMember({"entropy", "minmax", "percentile"}))
      ->capture_default_str();
  cmd->add_option("--calibBatches", flags->calib_batches, "Calibration batches to use")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--calibBatchSize", flags->calib_batch_size, "Samples per calibration batch (within the profile)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--calibPercentile", flags->calib_percentile, "Percentile kept by --calibAlgo=percentile")
      ->check(CLI::Range(1e-6, 100.0))
      ->capture_default_str();
  cmd->add_option("--layerPrecisions", flags->layer_precisions,
                  "Per-layer precision, e.g. /fc3/Gemm:fp32,/fc1/Gemm:int8 (layer or ONNX node names, * for all)")
      ->type_name("NAME:PREC,...")
      ->delimiter(',');
  cmd->add_option("--accuracyTarget", flags->accuracy_target,
                  "With --int8: move the INT8 layers that hurt most to FP32 until the top-1 drop on held-out data is "
                  "at most this many points")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--accuracyData", flags->accuracy_data,
                  "Labelled IDX images for --accuracyTarget (labels file beside them; default: the --calibData file, "
                  "samples after those calibration used)")
      ->type_name("FILE");
  cmd->add_option("--accuracySamples", flags->accuracy_samples, "Held-out samples --accuracyTarget evaluates")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--verbose", flags->verbose, "Log what the builder does");
}

Result<DataType> parse_io_format(const std::string& flag, const std::string& text) {
  const size_t colon = text.find(':');
  const std::string type = text.substr(0, colon);
  const std::string layout = colon == std::string::npos ? "chw" : text.substr(colon + 1);
  DataType dt = DataType::kUndefined;
  if (type == "fp32") dt = DataType::kFloat32;
  else if (type == "fp16") dt = DataType::kFloat16;
  else
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: type '{}' in '{}' is not supported (fp32, fp16)", flag, type, text));
  // Kiln's tensors are always linear (row-major); these are the trtexec names for linear layouts.
  if (layout != "chw" && layout != "linear")
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: layout '{}' in '{}' is not supported (chw or linear)", flag, layout, text));
  return dt;
}

Result<BuilderConfig> make_builder_config(const BuildFlags& flags) {
  BuilderConfig config;
  config.device = flags.device;
  config.verbose = flags.verbose;
  config.fp16 = flags.fp16 || (flags.best && flags.device == "cuda");
  config.bf16 = flags.bf16;
  config.best = flags.best;
  config.tf32 = !flags.no_tf32;
  config.timing_cache_file = flags.timing_cache_file;
  for (auto [flag, texts, out] : {std::tuple{"--inputIOFormats", &flags.input_formats, &config.input_formats},
                                  std::tuple{"--outputIOFormats", &flags.output_formats, &config.output_formats}})
    for (const std::string& t : *texts) {
      Result<DataType> dt = parse_io_format(flag, t);
      if (!dt.is_ok()) return std::move(dt).take_status();
      out->push_back(*dt);
    }
  for (const std::string& pass : split_list(flags.disabled_passes)) config.disabled_passes.insert(pass);
  config.int8.enabled = flags.int8 || (flags.best && (!flags.calib_data.empty() || !flags.calib_cache.empty()));
  config.int8.calib_data = flags.calib_data;
  config.int8.cache_file = flags.calib_cache;
  config.int8.algorithm = flags.calib_algo;
  config.int8.batches = flags.calib_batches;
  config.int8.batch_size = flags.calib_batch_size;
  config.int8.percentile = flags.calib_percentile;
  for (const std::string& spec : flags.layer_precisions) {
    // Names may contain ':' (e.g. onnx::Gemm_9), so the precision follows the last one.
    const size_t colon = spec.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size())
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("--layerPrecisions: '{}' is not NAME:PRECISION (e.g. /fc3/Gemm:fp32)", spec));
    config.int8.layer_precisions.emplace_back(spec.substr(0, colon), spec.substr(colon + 1));
  }
  if (!config.int8.enabled && (!flags.calib_data.empty() || !flags.calib_cache.empty()))
    return Status(StatusCode::kInvalidArgument, "--calibData and --calib need --int8 (or --best)");
  if (flags.best && !config.int8.enabled)
    report_note("--best: INT8 is not considered without calibration data (--calibData) or a cache (--calib)");

  struct Part {
    const char* flag;
    const std::vector<std::string>* values;
    Dims ShapeProfile::*member;
  };
  const Part parts[] = {{"--minShapes", &flags.min_shapes, &ShapeProfile::min},
                        {"--optShapes", &flags.opt_shapes, &ShapeProfile::opt},
                        {"--maxShapes", &flags.max_shapes, &ShapeProfile::max}};
  std::map<std::string, std::set<std::string>> given_by;  // input -> flags that name it
  for (const Part& part : parts) {
    Result<std::vector<NamedShape>> shapes = parse_shapes(part.flag, *part.values);
    if (!shapes.is_ok()) return std::move(shapes).take_status();
    for (NamedShape& s : shapes.value()) {
      config.profiles[s.name].*part.member = std::move(s.dims);
      given_by[s.name].insert(part.flag);
    }
  }
  for (const auto& [name, given] : given_by) {
    if (given.size() == 3) continue;
    std::vector<std::string> missing;
    for (const Part& part : parts) {
      if (!given.count(part.flag)) missing.push_back(part.flag);
    }
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("input '{}' has a profile in {} but not in {}: give all three of "
                              "--minShapes/--optShapes/--maxShapes",
                              name, join(std::vector<std::string>(given.begin(), given.end()), " and "),
                              join(missing, " and ")));
  }
  return config;
}

Result<BuiltEngine> build_from_flags(const BuildFlags& flags) {
  if (flags.onnx.empty()) return Status(StatusCode::kInvalidArgument, "--onnx is required");
  Status readable = check_readable("--onnx", flags.onnx);
  if (!readable.is_ok()) return readable;
  Result<BuilderConfig> config = make_builder_config(flags);
  if (!config.is_ok()) return std::move(config).take_status();
  // Checked here rather than trusted to the library so a typo never silently leaves a pass on.
  std::vector<std::string> known;
  for (const PassInfo& p : list_passes()) known.push_back(p.name);
  for (const std::string& pass : config->disabled_passes) {
    if (std::find(known.begin(), known.end(), pass) == known.end()) {
      return Status(StatusCode::kInvalidArgument, fmt::format("--disablePass: unknown pass '{}' (passes: {})", pass,
                                                              known.empty() ? "none" : join(known, ", ")));
    }
  }

  ProgressBar calib_bar("calibrating");
  config->int8.progress = [&calib_bar](int done, int total) {
    calib_bar.update(static_cast<double>(done) / total, fmt::format("batch {}/{}", done, total));
  };
  Result<BuildOutput> out = build_engine_from_file(flags.onnx, config.value());
  calib_bar.finish();
  if (!out.is_ok()) return std::move(out).take_status().with_context(fmt::format("building '{}'", flags.onnx));

  BuiltEngine built;
  built.bytes = std::move(out.value().engine);
  built.summary = std::move(out.value().summary);
  if (!flags.save_engine.empty()) {
    Status s = write_binary_file(flags.save_engine, built.bytes.data(), built.bytes.size());
    if (!s.is_ok()) return std::move(s).with_context("--saveEngine");
  }
  Result<std::shared_ptr<Engine>> engine = Runtime().deserialize_engine(built.bytes);
  if (!engine.is_ok()) {
    return std::move(engine).take_status().with_context("loading the engine just built (a Kiln bug)");
  }
  built.engine = std::move(engine).value();
  return built;
}

std::string format_build_summary(const BuiltEngine& built, const BuildFlags& flags) {
  const BuildSummary& s = built.summary;
  std::string out;
  out += fmt::format("[I] Built '{}' for {} in {:.1f} ms\n", flags.onnx, flags.device, s.build_ms);
  out += fmt::format("[I] ONNX nodes: {} -> layers after fusion: {} (+{} views)\n", s.onnx_nodes, s.layers,
                     s.view_layers);
  out += fmt::format("[I] Weights: {}\n", format_bytes(s.weight_bytes));
  out += fmt::format("[I] Target: {}\n", s.target);
  out += fmt::format("[I] Activation arena: {}\n", format_bytes(s.arena_bytes));
  if (flags.bf16)
    out += fmt::format("[I] Precision: BF16 in {} layer(s) (dense chains), FP32 elsewhere\n", s.bf16_layers);
  if (flags.device == "cuda") {
    out += fmt::format("[I] Precision: {}{}\n", flags.fp16 || flags.best ? "FP16" : "FP32",
                       flags.no_tf32 ? " (TF32 off)" : " (TF32 allowed)");
    out += fmt::format("[I] Tactics timed: {}, timing cache hits: {}\n", s.tactics_timed, s.timing_cache_hits);
    out += fmt::format("[I] Peak GPU memory in use during the build: {}\n", format_bytes(s.peak_device_memory));
  }
  out += fmt::format("[I] Passes run: {}\n", s.passes_run.empty() ? "(none)" : join(s.passes_run, ", "));
  for (const std::string& choice : s.best_choices) out += fmt::format("[I] --best: {}\n", choice);
  if (flags.int8 || flags.best) {
    out += fmt::format("[I] INT8 layers: {}; scales: {}\n", s.int8_layers, s.calibration.empty() ? "-" : s.calibration);
    for (const std::string& note : s.int8_notes) out += fmt::format("[I] Kept in float: {}\n", note);
  }
  for (const std::string& w : s.warnings) out += fmt::format("[W] {}\n", w);
  for (const std::string& input : engine_inputs(*built.engine)) {
    Result<ShapeProfile> p = built.engine->profile_shapes(input);
    const std::string shape = dims_to_string(built.engine->tensor_shape(input));
    if (p.is_ok()) {
      out += fmt::format("[I] Input '{}' {}: profile min {}, opt {}, max {}\n", input, shape, dims_to_string(p->min),
                         dims_to_string(p->opt), dims_to_string(p->max));
    } else {
      out += fmt::format("[I] Input '{}' {} (static)\n", input, shape);
    }
  }
  if (!flags.save_engine.empty()) {
    out += fmt::format("[I] Engine saved to '{}': {}\n", flags.save_engine, format_bytes(built.bytes.size()));
  }
  return out;
}

Result<std::shared_ptr<Engine>> load_engine_file(const std::string& path) {
  Status readable = check_readable("--loadEngine", path);
  if (!readable.is_ok()) return readable;
  Result<std::shared_ptr<Engine>> engine = Runtime().load_engine(path);
  if (!engine.is_ok()) return std::move(engine).take_status().with_context("--loadEngine");  // the library names the file
  return engine;
}

std::vector<std::string> engine_inputs(const Engine& engine) {
  std::vector<std::string> names;
  for (int i = 0; i < engine.num_io_tensors(); ++i) {
    const std::string& name = engine.io_tensor_name(i);
    if (engine.tensor_mode(name) == TensorIOMode::kInput) names.push_back(name);
  }
  return names;
}

std::vector<std::string> engine_outputs(const Engine& engine) {
  std::vector<std::string> names;
  for (int i = 0; i < engine.num_io_tensors(); ++i) {
    const std::string& name = engine.io_tensor_name(i);
    if (engine.tensor_mode(name) == TensorIOMode::kOutput) names.push_back(name);
  }
  return names;
}

}  // namespace kiln::cli
