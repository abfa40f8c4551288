// kiln.FusedMLP: a chain of dense layers run as one layer (issue 8: one launch on the GPU, one pass over the
// weights on the CPU, intermediate activations never written to memory):
//
//   h_0 = X,   h_{i+1} = act_i(h_i · W_iᵀ + b_i)   for i = 0 .. L-1,   Y = h_L
//
// Inputs:  X [..., K_0] (leading dims are flattened into M rows), then per layer W_i and b_i:
//          W_i [N_i, K_i] (row j = output feature j: ONNX Gemm transB=1 / PyTorch Linear layout),
//          b_i [N_i]; K_{i+1} = N_i. W_i and b_i are constants (the fusion pass only fuses constant weights).
// Attributes:
//   activations        string, one name per layer joined by ',' ("Relu,Relu," = ReLU, ReLU, none)
//   activation_alphas  floats, one per layer (LeakyRelu slope; ignored by other activations); default 0.01
//   weight_layout      string, "nk" (the layout above; the default). A backend that repacks the weights at
//                      build time records its own layout name here ("cpu.*", "cuda.*"); only that backend's
//                      kernels and nothing else (reference, other backends) accept such a node. A private
//                      layout keeps W_i's shape [N_i, K_i] and element count (only the order changes), so
//                      shape inference works on packed engines too.
// Output:  Y [..., N_{L-1}], X's dtype.
// Dtypes: every W_i and b_i share one float dtype (float32, or float16 after --fp16); X (and so Y) is float32
// or float16 and may differ from the weights' dtype: an FP16 network with FP32 IO reads the FP32 input and
// converts it in the kernel instead of running a Cast layer over it. The node's precision label
// (fp32/tf32/fp16) says how it may be computed, as for Gemm.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/gemm.h"

namespace kiln {

struct FusedMlpAttrs {
  std::vector<Activation> activations;  // one per layer
  std::vector<float> activation_alphas;  // one per layer
  std::string weight_layout = "nk";

  int layers() const { return static_cast<int>(activations.size()); }
  // Fails naming the bad attribute; also checks that the input count is 1 + 2 * layers.
  static Result<FusedMlpAttrs> parse(const Node& node);
  // Inverse of parse: writes the attributes onto node (used by the fusion pass).
  void store(Node& node) const;
};

inline int fused_mlp_weight_input(int layer) { return 1 + 2 * layer; }
inline int fused_mlp_bias_input(int layer) { return 2 + 2 * layer; }

}  // namespace kiln
