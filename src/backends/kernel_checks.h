// supports() gates shared by every backend's kernels. Messages are built without fmt so that .cu files
// can include this header.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <string>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// Ok when input 0 (and every other present input when all_inputs) has one of the dtypes; otherwise e.g.
// "dtype int8 of input 0 is not supported by cpu.f32.softmax".
Status require_dtypes(const Node& node, const Graph& graph, std::initializer_list<DataType> dtypes,
                      const std::string& kernel, bool all_inputs = true);

// Ok when input 0's elements are 1, 2, 4 or 8 bytes (kernels that move bytes, whatever the dtype);
// otherwise "dtype <name> is not supported by <kernel>".
Status require_word_dtype(const Node& node, const Graph& graph, const std::string& kernel);

// Ok when no input or output of the node has more than max_rank dims (kernels that pass shapes by value).
Status require_max_rank(const Node& node, const Graph& graph, size_t max_rank, const std::string& kernel);

}  // namespace kiln
