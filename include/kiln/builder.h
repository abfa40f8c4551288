// The builder: ONNX model -> optimized, serialized engine.
#pragma once
#include <cstdint>
#include <functional>
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
  // CPU: dense layer chains (kiln.FusedMLP) run in BF16 (--bf16): bf16 weights and activations, float32
  // accumulation, engine IO FP32. Layers without a BF16 kernel stay FP32; INT8 layers stay INT8.
  bool bf16 = false;
  // Per input / output in graph order (--inputIOFormats/--outputIOFormats); empty = all FP32.
  std::vector<DataType> input_formats, output_formats;
  // CUDA: tactic timings are read from and added to this file (--timingCacheFile); empty = none.
  std::string timing_cache_file;
  // INT8 post-training quantization (--int8): GEMM layers run in INT8 with scales from calibration.
  struct Int8 {
    bool enabled = false;
    // Calibration data for the (single) model input: comma-separated IDX (plain or .gz, normalized as the
    // model metadata says), .npy or raw float32 files (--calibData).
    std::string calib_data;
    // C++ alternative to calib_data: fills one batch per input name (in the model's input layout, FP32)
    // and returns false when there is no more data.
    std::function<Result<bool>(std::map<std::string, HostTensor>* batch)> next_batch;
    // TensorRT-format calibration cache (--calib): read when the file exists, else written after calibrating.
    std::string cache_file;
    // entropy | minmax | percentile (--calibAlgo). Percentile by default: on the course's MLP, TensorRT's
    // entropy calibrator clips the input at the background pixel value (amax 0.81 of 2.02) and costs 0.7
    // top-1 points, where percentile 99.99 loses none (docs/int8.md).
    std::string algorithm = "percentile";
    double percentile = 99.99;
    int batches = 8;         // calibration batches (--calibBatches)
    int batch_size = 256;    // samples per calibration batch (clipped to the profile's max)
    // Per-layer precision, trtexec's --layerPrecisions: layer or ONNX node name (or "*") -> fp32|fp16|int8.
    // Without an entry, a GEMM whose output is a graph output stays in float (TensorRT's usual advice).
    std::vector<std::pair<std::string, std::string>> layer_precisions;
    // Activation scales given by the caller (tensor name -> scale, amax / 127), like TensorRT's
    // setDynamicRange: when set, no calibration runs and no cache is read or written.
    std::map<std::string, float> scales;
    // Called as calibration proceeds (done, total batches of both passes), e.g. for a progress bar.
    std::function<void(int done, int total)> progress;
  };
  Int8 int8;
  // --best: each INT8-capable layer runs in INT8 or in float (FP16 on CUDA), whichever makes the engine
  // faster at the profile's opt shape, timed on this machine (needs int8 calibration data or a cache).
  bool best = false;
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
  int int8_layers = 0;                // layers running in INT8
  int bf16_layers = 0;                // CPU layers running in BF16 (bf16)
  std::string calibration;            // how scales were obtained, e.g. "entropy, 2048 samples" or "cache x.cache"
  std::map<std::string, float> int8_scales;  // the activation scales the INT8 layers use
  std::vector<std::string> int8_layer_names;
  std::vector<std::string> best_choices;     // --best: "layer: int8 x ms vs float y ms -> choice"
  std::vector<std::string> int8_notes;  // "layer: why" for each GEMM kept in float under --int8
  std::vector<std::string> warnings;    // e.g. a calibration cache from another TensorRT version
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
