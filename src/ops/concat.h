// Concat's axis and output shape, shared by the op definition and the CPU kernel.
#pragma once
#include <cstdint>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// Normalized axis for inputs of the given rank (negative axes allowed).
Result<int64_t> concat_axis(const Node& node, size_t rank);
// Output shape; every input must match the first except along axis.
Result<Dims> concat_shape(const Node& node, const std::vector<Dims>& inputs);

}  // namespace kiln
