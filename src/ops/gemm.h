// Gemm (ONNX) and kiln.FusedGemm: Y = act(alpha * op(A) * op(B) + beta * C).
// FusedGemm is what the fusion passes produce: A may have rank > 2 when not transposed (leading dims
// are flattened into M), and an activation may be fused into the epilogue.
#pragma once
#include <string>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

enum class Activation { kNone, kRelu, kLeakyRelu, kSigmoid, kTanh };

Result<Activation> activation_from_name(const std::string& name);  // "" -> kNone
const char* activation_name(Activation a);
double apply_activation(Activation a, double x, double alpha);

struct GemmAttrs {
  bool trans_a = false;
  bool trans_b = false;
  float alpha = 1.f;
  float beta = 1.f;
  Activation activation = Activation::kNone;
  float activation_alpha = 0.01f;  // LeakyRelu slope

  static Result<GemmAttrs> parse(const Node& node);
};

}  // namespace kiln
