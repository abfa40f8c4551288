// Operator definitions: one file per operator in src/ops/ registers an OpDef with its supported opset
// range, an attribute check that explains what is unsupported, a concrete shape/dtype function, and a
// float64 reference implementation (used for constant folding and as the test oracle).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// Newest default-domain opset whose semantics Kiln knows for every registered op.
constexpr int kMaxSupportedOpset = 23;

struct TensorDesc {
  DataType dtype = DataType::kUndefined;
  Dims shape;  // concrete
};

struct InferContext {
  const Node& node;
  std::vector<TensorDesc> inputs;        // aligned with node.inputs; kUndefined dtype when omitted
  std::vector<const Tensor*> constants;  // input data when that input is a constant, else nullptr
  std::vector<TensorDesc> outputs;       // sized to node.outputs; the op fills them

  bool has_input(size_t i) const { return i < inputs.size() && inputs[i].dtype != DataType::kUndefined; }
};

// Float64 tensor for reference evaluation; integer/bool tensors carry exact integral doubles.
struct RefTensor {
  DataType dtype = DataType::kUndefined;  // dtype the value has in the graph
  Dims shape;
  std::vector<double> data;
  int64_t elements() const { return volume(shape); }
};

struct RefContext {
  const Node& node;
  std::vector<const RefTensor*> inputs;  // nullptr when omitted
  std::vector<RefTensor> outputs;        // sized to node.outputs; the op fills dtype, shape, data
};

struct OpDef {
  std::string domain;  // "" for ai.onnx
  std::string op_type;
  int min_opset = 1;
  int max_opset = kMaxSupportedOpset;
  // Inputs whose values shape inference needs (e.g. Reshape's shape); they must be constant.
  std::vector<int> value_inputs;
  // Output 0 is a zero-copy view of input 0 (same bytes, new shape).
  bool is_view = false;
  // Attributes and inputs Kiln can run; the message says what is not supported and why.
  std::function<Status(const Node&)> check;
  std::function<Status(InferContext&)> infer;
  std::function<Status(RefContext&)> reference;
};

class OpRegistry {
 public:
  static OpRegistry& instance();
  // Fails on a duplicate (domain, op_type).
  Status add(OpDef def);
  const OpDef* find(const std::string& domain, const std::string& op_type) const;
  std::vector<const OpDef*> all() const;

 private:
  std::vector<std::unique_ptr<OpDef>> defs_;
};

// Registers at static-initialization time: `static OpRegistrar reg{OpDef{...}};`
struct OpRegistrar {
  explicit OpRegistrar(OpDef def);
};

// Shared helpers for op files.
// Numpy-style broadcast of two shapes; error names both shapes.
Result<Dims> broadcast_shapes(const Dims& a, const Dims& b);
// Normalizes a possibly negative axis against rank; error when out of range.
Result<int64_t> normalize_axis(int64_t axis, int64_t rank);
// Runs the op's shape function for node given concrete input descs and constant inputs.
Status infer_node(const Node& node, const Graph& g, const std::vector<TensorDesc>& inputs,
                  std::vector<TensorDesc>* outputs);
// Reads an int64 list from a constant tensor (int64 or int32).
std::vector<int64_t> tensor_to_int64s(const Tensor& t);

}  // namespace kiln
