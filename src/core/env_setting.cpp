#include "core/env_setting.h"

#include <cerrno>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

namespace kiln {

Result<bool> two_way_setting(const char* name, const char* when_false, const char* when_true, bool unset) {
  const char* v = std::getenv(name);
  const std::string s = v ? v : "";
  if (s.empty()) return unset;
  if (s == when_false) return false;
  if (s == when_true) return true;
  return Status(StatusCode::kInvalidArgument, fmt::format("{}='{}' (want {} or {})", name, s, when_false, when_true));
}

Result<int> int_setting(const char* name, int lo, int hi, int unset) {
  const char* v = std::getenv(name);
  const std::string s = v ? v : "";
  if (s.empty()) return unset;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(s.c_str(), &end, 10);
  const bool digits_only = s[0] == '-' || (s[0] >= '0' && s[0] <= '9');  // strtol would skip spaces
  if (digits_only && errno == 0 && end && *end == '\0' && n >= lo && n <= hi) return static_cast<int>(n);
  return Status(StatusCode::kInvalidArgument, fmt::format("{}='{}' (want a whole number from {} to {})", name, s, lo, hi));
}

}  // namespace kiln
