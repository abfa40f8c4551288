#pragma once
#include <string>

namespace kiln::cpu {
// Name of the instruction set oneDNN uses on this machine, e.g. "avx512_core_amx".
std::string target_isa();
}  // namespace kiln::cpu
