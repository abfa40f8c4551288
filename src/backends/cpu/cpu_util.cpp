#include "backends/cpu/cpu_util.h"

#include <omp.h>

#include <cctype>

namespace kiln::cpu {

std::string kernel_name(const std::string& stem, const std::string& op_type) {
  std::string s = stem + ".";
  for (char c : op_type) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

ScopedOmpThreads::ScopedOmpThreads(int threads) {
  if (threads <= 0) return;
  saved_ = omp_get_max_threads();
  omp_set_num_threads(threads);
}

ScopedOmpThreads::~ScopedOmpThreads() {
  if (saved_ > 0) omp_set_num_threads(saved_);
}

}  // namespace kiln::cpu
