// Kiln's error type: a code, a message and a context chain (node, tensor, shape...). Library code
// never throws across the public API and never aborts; every fallible call returns Status or Result<T>.
#pragma once
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace kiln {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // caller passed something wrong (shape, name, flag)
  kNotFound,         // file, tensor or layer missing
  kUnsupported,      // valid input Kiln cannot handle (op, attribute, opset)
  kParseError,       // malformed ONNX / shape string / cache
  kCorruptEngine,    // engine file truncated, checksum mismatch, bad structure
  kVersionMismatch,  // engine format or device mismatch
  kOutOfRange,       // shape outside profile, index out of bounds
  kIoError,          // read/write failure
  kRuntimeError,     // a backend call failed during execution
  kInternal,         // a bug in Kiln
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Outermost context first, e.g. {"layer 'fc1'", "input 'x' [1,784]"}.
  const std::vector<std::string>& context() const { return context_; }

  // Adds an outer context frame; returns *this so it can be used in a return statement.
  Status& with_context(std::string frame) & {
    if (!is_ok()) context_.insert(context_.begin(), std::move(frame));
    return *this;
  }
  Status&& with_context(std::string frame) && { return std::move(with_context(std::move(frame))); }

  // "layer 'fc1' (Gemm): input 'x': message"
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::vector<std::string> context_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}      // NOLINT(google-explicit-constructor)
  bool is_ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const& {
    static const Status kOkStatus;
    return is_ok() ? kOkStatus : std::get<Status>(v_);
  }
  Status take_status() && { return is_ok() ? Status() : std::move(std::get<Status>(v_)); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kiln
