// Kiln's graph IR: values (tensors) and nodes in topological order. The same IR is what the builder
// optimizes and what the engine file stores; the runtime executes it.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ir/attribute.h"
#include "ir/tensor.h"
#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

constexpr int kNoValue = -1;  // an omitted optional input

struct Value {
  std::string name;
  DataType dtype = DataType::kUndefined;
  bool rank_known = false;
  Dims shape;                           // -1 for dims not known at build time
  std::vector<std::string> dim_params;  // symbolic name per dim ("" when none), e.g. "batch"
  std::optional<Tensor> constant;       // initializers and folded values

  // Makes this a constant value: dtype and static shape follow the tensor.
  void set_constant(Tensor t) {
    dtype = t.dtype;
    shape = t.shape;
    rank_known = true;
    dim_params.assign(shape.size(), "");
    constant = std::move(t);
  }
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" = ai.onnx; "kiln" = Kiln's fused ops
  int opset = 0;       // opset version of the node's domain in the source model
  std::vector<int> inputs;   // value ids; kNoValue for omitted optional inputs
  std::vector<int> outputs;  // value ids
  Attributes attrs;
  std::vector<std::string> origins;  // names of the ONNX nodes this node stands for
  std::string kernel;                // assigned by the builder, e.g. "cpu.f32.gemm.onednn"
  std::string precision = "fp32";

  // "node 'fc1' (Gemm, opset 17)" for error context.
  std::string describe() const;
};

class Graph {
 public:
  std::vector<Value> values;
  std::vector<Node> nodes;  // topologically sorted
  std::vector<int> inputs;  // graph inputs (not initializers)
  std::vector<int> outputs;
  std::map<std::string, std::string> metadata;  // ONNX metadata_props
  std::string producer;                          // e.g. "pytorch 2.11.0"
  int64_t onnx_opset = 0;                        // default-domain opset of the source model

  int add_value(Value v);
  int find_value(const std::string& name) const;  // kNoValue if absent
  bool is_constant(int v) const { return v >= 0 && values[v].constant.has_value(); }
  bool is_graph_output(int v) const;
  bool is_graph_input(int v) const;
  // Consumers (node indices) of each value, recomputed on demand.
  std::vector<std::vector<int>> consumers() const;
  // Index of the node producing each value, -1 for inputs/constants.
  std::vector<int> producers() const;
  // Drops values no node or graph IO refers to and renumbers ids. Keeps node order.
  void compact();
  // Checks topological order, dangling ids and duplicate producers.
  Status verify() const;
};

}  // namespace kiln
