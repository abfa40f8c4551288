#include "kiln/status.h"

namespace kiln {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kParseError: return "parse error";
    case StatusCode::kCorruptEngine: return "corrupt engine";
    case StatusCode::kVersionMismatch: return "version mismatch";
    case StatusCode::kOutOfRange: return "out of range";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kRuntimeError: return "runtime error";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  std::string s;
  for (const auto& frame : context_) s += frame + ": ";
  return s + message_;
}

}  // namespace kiln
