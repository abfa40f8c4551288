#include "backends/cpu/cpu_util.h"

#include <omp.h>
#include <unistd.h>

#include <cctype>

#include <fmt/format.h>

namespace kiln::cpu {

std::string kernel_name(const std::string& stem, const std::string& op_type) {
  std::string s = stem + ".";
  for (char c : op_type) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Status working_elements(std::initializer_list<int64_t> dims, size_t element_bytes, const char* what, size_t* out) {
  static const uint64_t physical = static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  uint64_t n = 1, bytes = 0;
  bool overflow = false;
  for (int64_t d : dims) {
    if (d < 0) return Status(StatusCode::kOutOfRange, fmt::format("{} would have a negative size ({})", what, d));
    overflow |= __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n);
  }
  overflow |= __builtin_mul_overflow(n, static_cast<uint64_t>(element_bytes), &bytes);
  if (overflow || bytes > physical)
    return Status(StatusCode::kOutOfRange,
                  fmt::format("{} would need {} bytes, more than this machine's {} bytes of memory", what,
                              overflow ? std::string("over 2^64") : std::to_string(bytes), physical));
  *out = static_cast<size_t>(n);
  return Status::ok();
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
