// Transpose's permutation, shared by the op definition and the CPU kernel.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// `perm` (default: reversed dims) validated as a permutation of [0, rank).
Result<std::vector<int64_t>> transpose_perm(const Node& node, size_t rank);
// The raw `perm` attribute (nullopt when absent), for kernels that learn the rank at reshape().
Result<std::optional<std::vector<int64_t>>> perm_attribute(const Node& node);
// Same as transpose_perm from the raw attribute, for kernels that learn the rank at reshape().
Result<std::vector<int64_t>> resolve_perm(const std::optional<std::vector<int64_t>>& attr, size_t rank);
// out[i] = in[perm[i]].
Dims permute_dims(const Dims& in, const std::vector<int64_t>& perm);

}  // namespace kiln
