// The subcommands. Each has an options struct filled by CLI11, a function that registers its flags on
// the app, and a function that runs it and returns the process exit code.
#pragma once
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine_source.h"

namespace kiln::cli {

struct BuildOptions {
  BuildFlags build;
  bool list_passes = false;
};
CLI::App* add_build_command(CLI::App& app, BuildOptions* opts);
int run_build(const BuildOptions& opts);

struct RunOptions {
  std::string load_engine;
  BuildFlags build;
  std::vector<std::string> shapes;
  double warmup_ms = 200;
  int iterations = 10;
  double duration_s = 3;
  int threads = 0;
  std::vector<std::string> load_inputs;
  std::string export_output, export_times, export_profile, export_json;
  bool dump_profile = false;
  bool separate_profile_run = false;
  bool use_cuda_graph = false, no_data_transfers = false, use_spin_wait = false;
  std::string host_io;       // --hostIO: "", "pinned" or "pageable"
  bool low_latency = false;  // --lowLatency
};
CLI::App* add_run_command(CLI::App& app, RunOptions* opts);
int run_run(const RunOptions& opts);

struct EvalOptions {
  std::vector<std::string> load_engines;  // several: a table with argmax agreement against the first
  std::string images, labels, dataset;
  // Unset (NaN) means: take it from the engine's metadata, else the default.
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  double scale = std::numeric_limits<double>::quiet_NaN();
  int batch = 256;
  int threads = 0;
  std::string export_json;
};
CLI::App* add_eval_command(CLI::App& app, EvalOptions* opts);
int run_eval(const EvalOptions& opts);

struct InspectOptions {
  std::string load_engine;
  bool json = false;
};
CLI::App* add_inspect_command(CLI::App& app, InspectOptions* opts);
int run_inspect(const InspectOptions& opts);
// The readable layout of Engine::inspect_json(); missing keys print as "-".
std::string format_inspection(const nlohmann::json& doc);

struct CompareOptions {
  std::string load_engine;
  std::string against, onnx;  // the reference: exactly one
  std::string data;           // input samples (IDX/.npy/raw, one input); random N(0,1) when empty
  int64_t batch = 64;
  uint64_t seed = 1;
  double threshold = 0.05;
  int threads = 0;
  std::string export_json;
};
CLI::App* add_compare_command(CLI::App& app, CompareOptions* opts);
int run_compare(const CompareOptions& opts);

}  // namespace kiln::cli
