// Row independence, decided from two concrete shape inferences (at two batch sizes) and per-op rules.
// A value "follows the batch" when its axis 0 equals the batch at both sizes. A layer is row-wise when
// every non-constant input and every output follows the batch and the op never mixes rows: elementwise
// ops, casts and (de)quantization, matrix products whose only non-constant operand is the row operand,
// softmax not over axis 0, transposes that keep axis 0 first, concatenation not along axis 0, and
// reshapes (row-major: equal row counts mean each output row is the same bytes as the input row).
#include "runtime/batch_split.h"

#include <set>

#include <fmt/format.h>

#include "builder/shape_inference.h"

namespace kiln {
namespace {

// Ops whose output row i depends only on input row i (given the axis-0 checks done by the caller).
const std::set<std::string>& rowwise_ops() {
  static const std::set<std::string> ops = {
      "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Abs", "Neg", "Erf", "Gelu", "Clip",
      "HardSigmoid", "Softplus", "Identity", "Cast", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min",
      "Dropout", "QuantizeLinear", "DequantizeLinear", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
      "Gemm", "MatMul", "FusedGemm", "FusedMLP", "QGemm", "QLinearMatMul", "MatMulInteger"};
  return ops;
}

int64_t normalized_axis(int64_t axis, size_t rank) { return axis < 0 ? axis + static_cast<int64_t>(rank) : axis; }

}  // namespace

std::string batch_split_blocker(const Graph& g, const std::vector<ShapeProfile>& profiles) {
  if (g.inputs.empty()) return "the engine has no inputs";
  // Two batch sizes inside every input's profile.
  int64_t lo = 0, hi = INT64_MAX;
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const ShapeProfile& p = profiles[i];
    if (p.min.empty()) return fmt::format("input '{}' is a scalar", g.values[g.inputs[i]].name);
    lo = std::max(lo, p.min[0]);
    hi = std::min(hi, p.max[0]);
  }
  if (hi <= lo) return "the batch dimension (axis 0 of every input) is fixed by the profile";
  const int64_t b1 = hi, b2 = hi - 1;
  std::vector<TensorDesc> s1, s2;
  for (auto [b, out] : {std::pair{b1, &s1}, std::pair{b2, &s2}}) {
    std::vector<Dims> shapes;
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      Dims d = profiles[i].max;
      d[0] = b;
      shapes.push_back(d);
    }
    Status s = infer_concrete_shapes(g, shapes, out);
    if (!s.is_ok()) return "shape inference failed at batch " + std::to_string(b) + ": " + s.message();
  }
  auto follows = [&](int v) {
    return !s1[v].shape.empty() && !s2[v].shape.empty() && s1[v].shape[0] == b1 && s2[v].shape[0] == b2;
  };
  for (int v : g.outputs)
    if (!follows(v)) return fmt::format("output '{}' does not have the batch on axis 0", g.values[v].name);
  for (const Node& n : g.nodes) {
    const std::string where = fmt::format("layer '{}' ({})", n.name, n.op_type);
    if (!rowwise_ops().count(n.op_type) && n.op_type != "Softmax" && n.op_type != "LogSoftmax" &&
        n.op_type != "Transpose" && n.op_type != "Concat")
      return where + " is not known to keep batch rows independent";
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const int v = n.inputs[i];
      if (v == kNoValue || g.is_constant(v)) continue;
      // Shape inputs (Reshape's shape, Squeeze's axes) computed at run time would be unusual; refuse.
      if (!follows(v)) return fmt::format("{}: input '{}' does not have the batch on axis 0", where, g.values[v].name);
      // A matrix product mixes rows of its second operand: only the first may vary per row.
      const bool product = n.op_type == "Gemm" || n.op_type == "MatMul" || n.op_type == "FusedGemm" ||
                           n.op_type == "QGemm" || n.op_type == "QLinearMatMul" || n.op_type == "MatMulInteger" ||
                           n.op_type == "FusedMLP";
      if (product && i != 0) return where + ": its second operand varies per batch";
    }
    for (int v : n.outputs)
      if (!follows(v)) return fmt::format("{}: output '{}' does not have the batch on axis 0", where, g.values[v].name);
    if (n.op_type == "Gemm" || n.op_type == "FusedGemm") {
      auto ta = n.attrs.get_int("transA", 0);
      if (!ta.is_ok() || *ta != 0) return where + " transposes A";
    }
    // Elementwise ops broadcast constants across rows; a constant with the batch's extent on axis 0
    // would pair row i with constant row i (fine) but only at one batch size, which shape inference at
    // two sizes has already ruled out.
    const size_t rank = s1[n.outputs[0]].shape.size();
    if (n.op_type == "Softmax" || n.op_type == "LogSoftmax") {
      auto axis = n.attrs.get_int("axis", -1);
      if (!axis.is_ok() || normalized_axis(*axis, rank) == 0) return where + " normalizes over the batch";
    } else if (n.op_type == "Transpose") {
      auto perm = n.attrs.get_ints("perm", {});
      if (!perm.is_ok() || perm->empty() || (*perm)[0] != 0) return where + " moves the batch axis";
    } else if (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") {
      // Per-axis scales along axis 0 would give each row its own scale.
      const int sv = n.inputs.size() > 1 ? n.inputs[1] : kNoValue;
      auto axis = n.attrs.get_int("axis", 1);
      if (sv != kNoValue && volume(s1[sv].shape) > 1 && (!axis.is_ok() || normalized_axis(*axis, rank) == 0))
        return where + " has per-row scales";
    } else if (n.op_type == "Concat") {
      auto axis = n.attrs.get_int("axis", 0);
      if (!axis.is_ok() || normalized_axis(*axis, rank) == 0) return where + " concatenates along the batch";
    }
  }
  return "";
}

}  // namespace kiln
