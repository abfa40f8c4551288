#include "backends/cpu/cpu_util.h"

#include <cctype>

namespace kiln::cpu {

std::string kernel_name(const std::string& stem, const std::string& op_type) {
  std::string s = stem + ".";
  for (char c : op_type) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace kiln::cpu
