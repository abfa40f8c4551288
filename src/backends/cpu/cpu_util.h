// Helpers shared by the CPU kernels: kernel names and the size above which loops go
// parallel (below it, OpenMP's fork/join costs more than the loop).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "backends/kernel_checks.h"
#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::cpu {

constexpr int64_t kParallelThreshold = int64_t{1} << 16;

// Kernel name stem + "." + lower-case op type, e.g. ("cpu.f32.binary", "Add") -> "cpu.f32.binary.add".
std::string kernel_name(const std::string& stem, const std::string& op_type);

}  // namespace kiln::cpu
