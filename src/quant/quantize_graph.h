// The INT8 rewrite: which GEMM layers run in INT8, which activations need a scale, and the graph change
// itself (QuantizeLinear where float data enters an INT8 layer, kiln.QGemm with per-output-channel
// weight scales, INT8 tensors passed straight between consecutive INT8 layers).
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::quant {

struct Int8Plan {
  std::vector<int> layers;                   // node indices that become kiln.QGemm
  std::vector<int> scaled_values;            // activations needing a scale (the INT8 layers' inputs)
  std::vector<std::string> kept_float;       // "layer: why" for GEMMs left in float
};

// layer_precisions: (layer or ONNX node name or "*", "fp32"|"fp16"|"int8"), later entries win. Without an
// entry a GEMM runs in INT8 unless its output is a graph output. Unknown names or precisions are errors.
Result<Int8Plan> plan_int8(const Graph& g, const std::vector<std::pair<std::string, std::string>>& layer_precisions);

// Rewrites the planned layers; scales maps tensor names to activation scales (amax / 127) and must
// cover every planned value (the error lists what is missing).
Status apply_int8(Graph& g, const Int8Plan& plan, const std::map<std::string, float>& scales);

// Whether a node only reshapes its input 0 (the ops whose OpDef is_view: Reshape, Flatten, Squeeze, ...).
bool is_view_node(const Node& n);

// Whether a node is a float GEMM the INT8 pass can quantize, and if not, why.
Status int8_candidate(const Graph& g, const Node& n);

}  // namespace kiln::quant
