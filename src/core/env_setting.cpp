#include "core/env_setting.h"

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

}  // namespace kiln
