// The builder: ONNX model -> optimized, serialized engine.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kiln/runtime.h"
#include "kiln/status.h"

namespace kiln {

struct BuilderConfig {
  std::string device = "cpu";  // "cpu" or "cuda"
  // Precision, as in TensorRT 10: FP32 layers may use TF32 tensor cores unless tf32 is off (--noTF32);
  // fp16 lets layers run in FP16 (--fp16). Engine IO stays FP32 unless the formats below say fp16.
  bool fp16 = false;
  bool tf32 = true;
  // Per input / output in graph order (--inputIOFormats/--outputIOFormats); empty = all FP32.
  std::vector<DataType> input_formats, output_formats;
  // CUDA: tactic timings are read from and added to this file (--timingCacheFile); empty = none.
  std::string timing_cache_file;
  // Per-input profiles. Inputs with dynamic dims not listed here get the default profile: every
  // dynamic dim min=1, opt=1, max=kDefaultMaxDim.
  std::map<std::string, ShapeProfile> profiles;
  // Names of optimization passes to skip (see `kiln build --help` / list_passes()).
  std::set<std::string> disabled_passes;
  bool verbose = false;
};

constexpr int64_t kDefaultMaxDim = 8192;

struct BuildSummary {
  int onnx_nodes = 0;
  int layers = 0;  // after fusion, excluding zero-copy views
  int view_layers = 0;
  uint64_t weight_bytes = 0;
  uint64_t arena_bytes = 0;
  double build_ms = 0;
  std::string target;                 // CPU ISA or GPU description
  uint64_t peak_device_memory = 0;    // CUDA: most device memory in use during the build (tactic timing)
  int tactics_timed = 0;              // CUDA: GEMM candidates timed (not counting cache hits)
  int timing_cache_hits = 0;
  std::vector<std::string> passes_run;
};

struct BuildOutput {
  std::vector<uint8_t> engine;
  BuildSummary summary;
};

// Builds an engine from an ONNX file (external data is resolved next to it).
Result<BuildOutput> build_engine_from_file(const std::string& onnx_path, const BuilderConfig& config);
// Builds from in-memory ONNX bytes; external data is resolved against base_dir.
Result<BuildOutput> build_engine_from_bytes(const std::string& onnx_bytes, const std::string& base_dir,
                                            const BuilderConfig& config);

// Every tensor of an ONNX model computed in float64 by the operators' reference implementations, on the
// model as imported (no passes, no fusion): the oracle `kiln compare --onnx` checks engines against.
// `inputs` by name, in the model's input dtypes; returns each graph input and node output by name as a
// kFloat64 HostTensor.
Result<std::map<std::string, HostTensor>> evaluate_onnx_reference(const std::string& onnx_path,
                                                                  const std::map<std::string, HostTensor>& inputs);

struct PassInfo {
  std::string name;
  std::string description;
};
std::vector<PassInfo> list_passes();

}  // namespace kiln
