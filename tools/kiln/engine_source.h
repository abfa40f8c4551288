// Where a subcommand's engine comes from: a saved engine file (--loadEngine) or an ONNX model built on
// the spot (--onnx plus the build flags, shared by `kiln build` and `kiln run`).
#pragma once
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "kiln/builder.h"
#include "kiln/runtime.h"

namespace kiln::cli {

struct BuildFlags {
  std::string onnx;
  std::string save_engine;
  std::vector<std::string> min_shapes, opt_shapes, max_shapes;
  std::string device = "cpu";
  std::vector<std::string> disabled_passes;
  bool verbose = false;
  bool fp16 = false, bf16 = false, no_tf32 = false, best = false;
  std::string timing_cache_file;
  std::vector<std::string> input_formats, output_formats;  // "fp16:chw" per IO tensor, in order
  bool int8 = false;
  std::string calib_data, calib_cache, calib_algo = "percentile";
  int calib_batches = 8, calib_batch_size = 256;
  double calib_percentile = 99.99;
  std::vector<std::string> layer_precisions;  // "name:fp32", comma-separated
  double accuracy_target = std::numeric_limits<double>::quiet_NaN();  // top-1 points; NaN = off
  std::string accuracy_data;
  int64_t accuracy_samples = 10000;

  // True when a flag that only matters for building was given (an error next to --loadEngine).
  bool any_build_only_flag() const;
};

// Adds --onnx, --saveEngine, --minShapes/--optShapes/--maxShapes, --device, --disablePass, --verbose,
// and the precision flags --fp16/--noTF32/--best, --inputIOFormats/--outputIOFormats, --timingCacheFile.
void add_build_flags(CLI::App* cmd, BuildFlags* flags);

// Help text explaining the default profile for dynamic dims.
std::string default_profile_note();

// "fp16:chw" -> kFloat16; the formats trtexec names for linear layouts of fp32/fp16 only.
Result<DataType> parse_io_format(const std::string& flag, const std::string& text);

// Turns the flags into a BuilderConfig; an input named in only some of min/opt/max is an error.
// (min <= opt <= max and rank checks are the library's.)
Result<BuilderConfig> make_builder_config(const BuildFlags& flags);

struct BuiltEngine {
  std::vector<uint8_t> bytes;
  BuildSummary summary;
  std::shared_ptr<Engine> engine;
};

// Builds flags.onnx, writes flags.save_engine if set, and deserializes the result (which also checks
// the freshly written bytes are a loadable engine).
Result<BuiltEngine> build_from_flags(const BuildFlags& flags);

// The build summary lines ("[I] ..."), including each input's profile.
std::string format_build_summary(const BuiltEngine& built, const BuildFlags& flags);

// Reads and deserializes an engine file; errors name the file.
Result<std::shared_ptr<Engine>> load_engine_file(const std::string& path);

// IO tensor names of an engine, in engine order.
std::vector<std::string> engine_inputs(const Engine& engine);
std::vector<std::string> engine_outputs(const Engine& engine);

}  // namespace kiln::cli
