// `kiln run`: time an engine like trtexec does (warm-up, then at least N iterations and D seconds) and
// report latency statistics, optionally per-layer profiles and exported outputs/timings.
#include <chrono>
#include <climits>
#include <functional>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"
#include "executor.h"
#include "io_binding.h"
#include "layer_profile.h"
#include "perf_report.h"
#include "progress.h"
#include "shapes_arg.h"

namespace kiln::cli {

CLI::App* add_run_command(CLI::App& app, RunOptions* opts) {
  CLI::App* cmd = app.add_subcommand("run", "Time inference of an engine (or of an ONNX model built on the spot)");
  cmd->add_option("--loadEngine", opts->load_engine, "Engine file to run")->type_name("FILE");
  add_build_flags(cmd, &opts->build);
  cmd->add_option("--shapes", opts->shapes,
                  "Shapes of dynamic inputs, e.g. input:8192x1x28x28 (default: the profile's opt shape)")
      ->type_name("NAME:AxB,...");
  cmd->add_option("--warmUp", opts->warmup_ms, "Warm up for this many ms before timing")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--iterations", opts->iterations, "Run at least this many timed iterations")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--duration", opts->duration_s, "Run for at least this many seconds")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--threads", opts->threads,
                  "Worker threads: the CPU backend's kernels; CUDA engines' staging threads for --hostIO (0 = library "
                  "default)")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--loadInputs", opts->load_inputs,
                  "Read inputs from raw little-endian files, e.g. input:input.bin (default: random data, fixed seed)")
      ->type_name("NAME:FILE,...");
  cmd->add_option("--exportOutput", opts->export_output, "Write output values as trtexec's JSON")->type_name("FILE");
  cmd->add_option("--exportTimes", opts->export_times, "Write every timed run as trtexec's JSON")->type_name("FILE");
  cmd->add_flag("--dumpProfile", opts->dump_profile, "Print per-layer times");
  cmd->add_option("--exportProfile", opts->export_profile, "Write per-layer times as trtexec's JSON")
      ->type_name("FILE");
  cmd->add_flag("--separateProfileRun", opts->separate_profile_run,
                "Profile layers in separate runs so the timed runs are not perturbed");
  cmd->add_flag("--useCudaGraph", opts->use_cuda_graph, "CUDA: capture the layers into a CUDA graph and replay it");
  cmd->add_flag("--noDataTransfers", opts->no_data_transfers,
                "CUDA: time device-resident runs (no H2D/D2H copies in the timed loop)");
  cmd->add_flag("--useSpinWait", opts->use_spin_wait, "CUDA: wait for each run by spinning instead of blocking");
  cmd->add_option("--hostIO", opts->host_io,
                  "CUDA (Kiln): hand execute() host memory, pinned or pageable; the runtime copies in and out, "
                  "large batches in chunks overlapped with compute")
      ->check(CLI::IsMember({"pinned", "pageable"}))
      ->type_name("MODE");
  cmd->add_flag("--lowLatency", opts->low_latency,
                "CUDA (Kiln): a resident kernel answers each run from host memory (no launch, no stream "
                "synchronize); for small batches; implies --hostIO=pageable unless given; with "
                "--noDataTransfers it reads and writes device buffers instead");
  cmd->add_option("--exportJSON", opts->export_json, "Write the performance summary as JSON")->type_name("FILE");
  cmd->footer("The run ends once both --iterations and --duration are reached. Batch in throughput = dim 0 of the "
              "first input.\n" +
              default_profile_note());
  return cmd;
}

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;  // keeps keys in trtexec's order

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Seed for random inputs: fixed, and different per input so two inputs never hold the same data.
constexpr uint64_t kInputSeed = 0x6b696c6e;  // "kiln"

Result<std::shared_ptr<Engine>> obtain_engine(const RunOptions& opts) {
  if (!opts.load_engine.empty()) return load_engine_file(opts.load_engine);
  Result<BuiltEngine> built = build_from_flags(opts.build);
  if (!built.is_ok()) return std::move(built).take_status();
  fmt::print("{}", format_build_summary(built.value(), opts.build));
  return std::move(built.value().engine);
}

Status fill_inputs(const RunOptions& opts, const Engine& engine, Bindings& io) {
  Result<std::vector<NamedFile>> files = parse_named_files("--loadInputs", opts.load_inputs, engine_inputs(engine));
  if (!files.is_ok()) return std::move(files).take_status();
  std::map<std::string, std::string> file_of;
  for (const NamedFile& f : files.value()) {
    Status s = check_input_name(engine, "--loadInputs", f.name);
    if (!s.is_ok()) return s;
    file_of[f.name] = f.path;
  }
  uint64_t seed = kInputSeed;
  for (BoundTensor& t : io.inputs) {
    std::string source;
    if (auto it = file_of.find(t.name); it != file_of.end()) {
      Status s = load_raw_file(t.name, it->second, t.buffer);
      if (!s.is_ok()) return s;
      source = fmt::format("from '{}'", it->second);
    } else {
      fill_random(t.buffer, t.dtype, seed);
      source = fmt::format("random, seed {}", seed);
    }
    ++seed;
    fmt::print("[I] Input '{}': {} {} ({})\n", t.name, dtype_name(t.dtype), dims_to_string(t.dims), source);
  }
  return Status::ok();
}

// Runs until both the iteration count and the duration are reached; records runs and/or layer times.
Status timed_loop(Executor& exec, ExecutionContext& ctx, const RunOptions& opts, const char* label,
                  std::vector<TimedRun>* runs, LayerProfile* profile) {
  ProgressBar bar(label);
  if (runs) runs->reserve(static_cast<size_t>(opts.iterations));
  const Clock::time_point t0 = Clock::now();
  for (int i = 0;; ++i) {
    const double elapsed_s = ms_between(t0, Clock::now()) / 1000.0;
    if (i >= opts.iterations && elapsed_s >= opts.duration_s) break;
    TimedRun run;
    const Clock::time_point start = Clock::now();
    Status s = profile ? ctx.execute() : exec.run(&run);
    const Clock::time_point end = Clock::now();
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("{} iteration {}", label, i));
    run.start_ms = ms_between(t0, start);
    run.end_ms = ms_between(t0, end);
    if (runs) runs->push_back(run);
    if (profile) profile->add_run(ctx.last_layer_timings());
    if (bar.enabled()) {
      const double by_iters = static_cast<double>(i + 1) / opts.iterations;
      const double by_time = opts.duration_s > 0 ? ms_between(t0, end) / 1000.0 / opts.duration_s : 1.0;
      bar.update(std::min(by_iters, by_time), fmt::format("{} runs", i + 1));
    }
  }
  return Status::ok();
}

Json outputs_to_json(const Bindings& io) {
  Json out = Json::array();
  for (const BoundTensor& t : io.outputs) {
    out.push_back({{"name", t.name},
                   {"dimensions", dims_to_string(t.dims)},
                   {"values", values_to_json(t.buffer.data(), t.dtype, volume(t.dims))}});
  }
  return out;
}

Json summary_to_json(const RunOptions& opts, const Engine& engine, const Bindings& io, const PerfSummary& s,
                     int host_f16_inputs) {
  Json shapes = Json::object();
  for (const BoundTensor& t : io.inputs) shapes[t.name] = dims_to_string(t.dims);
  const Json stats = stats_to_json(s.latency);
  Json doc = {{"engine", opts.load_engine.empty() ? Json() : Json(opts.load_engine)},
          {"onnx", opts.build.onnx.empty() ? Json() : Json(opts.build.onnx)},
          {"device", engine.device()},
          {"kiln_version", version()},
          {"threads", opts.threads},  // 0 = library default
          {"batch", s.batch},
          {"shapes", shapes},
          {"warmup_ms", opts.warmup_ms},
          {"iterations", s.runs},
          {"throughput_qps", s.qps},
          {"throughput_samples_per_s", s.samples_per_s},
          {"latency_ms", stats},
          {"enqueue_ms", stats_to_json(s.enqueue)},
          {"compute_ms", stats_to_json(s.compute)},
          {"total_host_walltime_s", s.walltime_s},
          {"total_compute_time_s", s.total_compute_s},
          {"latency_unstable", s.latency.cv_percent > kUnstableCvPercent}};
  if (s.gpu) {  // event-timed runs (device memory); host IO and low-latency runs are timed on the host
    doc["h2d_ms"] = stats_to_json(s.h2d);
    doc["d2h_ms"] = stats_to_json(s.d2h);
  }
  if (engine.device() == "cuda") {
    doc["target"] = engine.target();
    doc["use_cuda_graph"] = opts.use_cuda_graph;
    doc["no_data_transfers"] = opts.no_data_transfers;
    doc["use_spin_wait"] = opts.use_spin_wait;
    doc["host_io"] =
        opts.host_io.empty() ? (opts.low_latency && !opts.no_data_transfers ? "pageable" : "none") : opts.host_io;
    doc["low_latency"] = opts.low_latency;
    doc["host_io_f16_inputs"] = host_f16_inputs;  // inputs converted to float16 on the host while staging
  }
  return doc;
}

Status export_json(const std::string& flag, const std::string& path, const Json& doc) {
  Status s = write_text_file(path, doc.dump(2) + "\n");
  if (!s.is_ok()) return std::move(s).with_context(flag);
  fmt::print("[I] {}: wrote '{}'\n", flag, path);
  return Status::ok();
}

// Runs for `ms` milliseconds so caches, page mappings and kernel JIT are settled before timing.
Status warm_up(Executor& exec, double ms) {
  int runs = 0;
  const Clock::time_point start = Clock::now();
  while (ms_between(start, Clock::now()) < ms) {
    TimedRun ignored;
    Status s = exec.run(&ignored);
    if (!s.is_ok()) return std::move(s).with_context("warm-up");
    ++runs;
  }
  if (ms > 0) fmt::print("[I] Warm-up: {} runs in {:.1f} ms\n", runs, ms_between(start, Clock::now()));
  return Status::ok();
}

Status run_checked(const RunOptions& opts) {
  if (opts.load_engine.empty() == opts.build.onnx.empty()) {
    return Status(StatusCode::kInvalidArgument, "run: give exactly one of --loadEngine and --onnx");
  }
  if (!opts.load_engine.empty() && opts.build.any_build_only_flag()) {
    return Status(StatusCode::kInvalidArgument,
                  "run: build flags (--saveEngine, --minShapes/--optShapes/--maxShapes, --device, --disablePass, "
                  "--fp16, --bf16, --noTF32, --best, --timingCacheFile, --inputIOFormats/--outputIOFormats) need --onnx, "
                  "not --loadEngine");
  }
  Result<std::vector<NamedShape>> shape_list = parse_shapes("--shapes", opts.shapes);
  if (!shape_list.is_ok()) return std::move(shape_list).take_status();
  std::map<std::string, Dims> shapes;
  for (NamedShape& s : shape_list.value()) shapes[s.name] = std::move(s.dims);

  Result<std::shared_ptr<Engine>> engine_or = obtain_engine(opts);
  if (!engine_or.is_ok()) return std::move(engine_or).take_status();
  const Engine& engine = *engine_or.value();
  Result<std::unique_ptr<ExecutionContext>> ctx_or = engine.create_execution_context();
  if (!ctx_or.is_ok()) return std::move(ctx_or).take_status().with_context("creating an execution context");
  ExecutionContext& ctx = *ctx_or.value();
  ctx.set_num_threads(opts.threads);

  Result<Bindings> io_or = bind_io(engine, ctx, shapes, "--shapes");
  if (!io_or.is_ok()) return std::move(io_or).take_status();
  Bindings& io = io_or.value();
  Status s = fill_inputs(opts, engine, io);
  if (!s.is_ok()) return s;
  for (const BoundTensor& t : io.outputs) {
    fmt::print("[I] Output '{}': {} {}\n", t.name, dtype_name(t.dtype), dims_to_string(t.dims));
  }
  const int64_t batch = !io.inputs.empty() && !io.inputs[0].dims.empty() ? io.inputs[0].dims[0] : 1;
  const bool profiling = opts.dump_profile || !opts.export_profile.empty();
  if (opts.separate_profile_run && !profiling) {
    report_note("--separateProfileRun has no effect without --dumpProfile or --exportProfile");
  }
  Result<std::unique_ptr<Executor>> exec_or =
      Executor::create(engine, ctx, io,
                       {opts.use_cuda_graph, opts.no_data_transfers, opts.use_spin_wait,
                        opts.host_io == "pinned"     ? HostIo::kPinned
                        : opts.host_io == "pageable" || (opts.low_latency && !opts.no_data_transfers)
                            ? HostIo::kPageable
                            : HostIo::kNone,
                        opts.low_latency});
  if (!exec_or.is_ok()) return std::move(exec_or).take_status();
  Executor& exec = *exec_or.value();
  if (exec.on_gpu()) {
    fmt::print("[I] Device: {}{}{}{}{}{}\n", engine.target(), opts.use_cuda_graph ? ", CUDA graph" : "",
               opts.no_data_transfers ? ", no data transfers" : "", opts.use_spin_wait ? ", spin wait" : "",
               exec.host_io() ? fmt::format(", host IO ({})", opts.host_io.empty() ? "pageable" : opts.host_io) : "",
               opts.low_latency ? ", low-latency (resident kernel)" : "");
    if (exec.host_io() && ((opts.no_data_transfers && !opts.low_latency) || opts.use_spin_wait))
      report_note("--noDataTransfers and --useSpinWait do not apply with --hostIO/--lowLatency (the runtime copies)");
  } else {
    fmt::print("[I] Device: {}, threads: {}\n", engine.device(),
               opts.threads > 0 ? std::to_string(opts.threads) : std::string("library default"));
    if (opts.use_cuda_graph || opts.no_data_transfers || opts.use_spin_wait || !opts.host_io.empty() || opts.low_latency)
      report_note("--useCudaGraph, --noDataTransfers, --useSpinWait, --hostIO and --lowLatency apply to CUDA engines only");
  }
  fmt::print("[I] Warm-up {} ms, then at least {} iterations and {} s\n", opts.warmup_ms, opts.iterations,
             opts.duration_s);

  s = warm_up(exec, opts.warmup_ms);
  if (!s.is_ok()) return s;
  if (exec.host_io() && ctx.last_host_io_f16_inputs() > 0)
    fmt::print("[I] Host IO: {} input(s) converted by the staging threads (to float16 or int8, as the engine's first "
               "layers would: fewer bytes cross PCIe; kiln inspect shows the form; KILN_HOST_IO_CAST=0 turns it off)\n",
               ctx.last_host_io_f16_inputs());

  LayerProfile profile;
  // GPU layer timing needs events around every layer (no graph, no overlap): always its own runs.
  const bool profile_inline = profiling && !opts.separate_profile_run && !exec.on_gpu();
  ctx.set_profiling(profile_inline);
  std::vector<TimedRun> runs;
  s = timed_loop(exec, ctx, opts, "Timing", &runs, profile_inline ? &profile : nullptr);
  if (!s.is_ok()) return s;
  if (profiling && !profile_inline) {
    ctx.set_profiling(true);
    s = timed_loop(exec, ctx, opts, "Profiling", nullptr, &profile);
    ctx.set_profiling(false);
    if (!s.is_ok()) return s;
  }

  s = exec.fetch_outputs();
  if (!s.is_ok()) return std::move(s).with_context("fetching outputs");
  const PerfSummary summary = summarize(runs, batch);
  fmt::print("{}", format_summary(summary));
  if (opts.dump_profile) fmt::print("{}", profile.format_table());

  struct Export {
    const char* flag;
    const std::string* path;
    std::function<Json()> doc;
  };
  const Export exports[] = {
      {"--exportOutput", &opts.export_output, [&] { return outputs_to_json(io); }},
      {"--exportTimes", &opts.export_times, [&] { return times_to_json(runs); }},
      {"--exportProfile", &opts.export_profile, [&] { return profile.to_json(); }},
      {"--exportJSON", &opts.export_json, [&] { return summary_to_json(opts, engine, io, summary, ctx.last_host_io_f16_inputs()); }},
  };
  for (const Export& e : exports) {
    if (e.path->empty()) continue;
    s = export_json(e.flag, *e.path, e.doc());
    if (!s.is_ok()) return s;
  }
  return Status::ok();
}

}  // namespace

int run_run(const RunOptions& opts) {
  Status s = run_checked(opts);
  if (!s.is_ok()) return report_error(s);
  return kExitOk;
}

}  // namespace kiln::cli
