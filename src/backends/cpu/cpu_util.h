// Helpers shared by the CPU kernels: dtype gates for supports() and the size above which loops go
// parallel (below it, OpenMP's fork/join costs more than the loop).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::cpu {

constexpr int64_t kParallelThreshold = int64_t{1} << 16;

// Ok when input 0 (and every other present input when all_inputs) has one of the dtypes; otherwise e.g.
// "dtype int8 is not supported by cpu.f32.softmax".
Status require_dtypes(const Node& node, const Graph& graph, std::initializer_list<DataType> dtypes,
                      const std::string& kernel, bool all_inputs = true);

// Kernel name stem + "." + lower-case op type, e.g. ("cpu.f32.binary", "Add") -> "cpu.f32.binary.add".
std::string kernel_name(const std::string& stem, const std::string& op_type);

}  // namespace kiln::cpu
