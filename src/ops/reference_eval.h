// Float64 evaluation with the operators' reference implementations: one node (constant folding) or a whole
// graph (the oracle for model tests).
#pragma once
#include <optional>
#include <vector>

#include "ir/graph.h"
#include "ir/tensor.h"
#include "kiln/status.h"
#include "ops/op.h"

namespace kiln {

// Tensor -> float64 (integers and bools become exact integral doubles, float16 is widened).
RefTensor ref_from_tensor(const Tensor& t);
// RefTensor -> Tensor of dtype, converting each value as Cast would (float16 rounds to nearest even,
// float -> int truncates).
Tensor tensor_from_ref(const RefTensor& r, DataType dtype);

// Runs one node's reference; inputs aligned with node.inputs (nullptr for omitted ones). Returns one
// RefTensor per node output. Errors carry the node's description.
Result<std::vector<RefTensor>> evaluate_node_reference(const Node& node, const std::vector<const RefTensor*>& inputs);

// Runs g node by node. inputs follow g.inputs; constants come from the values' Tensors. Returns every
// value by id (nullopt where none was computed, e.g. values no node produces).
Result<std::vector<std::optional<RefTensor>>> evaluate_reference_values(const Graph& g,
                                                                        const std::vector<RefTensor>& inputs);
// The same, returning g.outputs only.
Result<std::vector<RefTensor>> evaluate_reference(const Graph& g, const std::vector<RefTensor>& inputs);

}  // namespace kiln
