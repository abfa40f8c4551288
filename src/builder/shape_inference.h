// Shape/dtype propagation. Concrete propagation runs whenever input shapes change (build time at the
// profile's min/opt/max, run time in ExecutionContext); the static view marks dims that differ across
// the profile as dynamic and names them after the input dim they follow (e.g. "batch").
#pragma once
#include <vector>

#include "ir/graph.h"
#include "kiln/runtime.h"
#include "ops/op.h"

namespace kiln {

// Fills out[v] for every value: constants from their data, inputs from input_shapes (g.inputs order),
// the rest by each node's shape function.
Status infer_concrete_shapes(const Graph& g, const std::vector<Dims>& input_shapes, std::vector<TensorDesc>* out);

// Resolves the profile of every graph input (g.inputs order): explicit ones are checked against the
// declared shape; dynamic dims without one get min 1, opt 1, max kDefaultMaxDim.
Result<std::vector<ShapeProfile>> resolve_profiles(const Graph& g, const std::map<std::string, ShapeProfile>& given);

// Runs concrete inference at min, opt and max and writes dtype/shape/dim_params into g.values.
// Also returns, per value, the largest byte size seen (for memory planning).
Status annotate_static_shapes(Graph& g, const std::vector<ShapeProfile>& profiles, std::vector<uint64_t>* max_bytes);

}  // namespace kiln
