#include "cli_common.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <fmt/format.h>

namespace kiln::cli {

int report_error(std::string_view message, int code) {
  std::fflush(stdout);  // keep the order of what was printed before on a shared terminal
  fmt::print(stderr, "kiln: error: {}\n", message);
  return code;
}

int report_error(const Status& status, int code) { return report_error(status.to_string(), code); }

void report_note(std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "kiln: note: {}\n", message);
}

namespace {
struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;
}  // namespace

Result<std::vector<uint8_t>> read_binary_file(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return Status(StatusCode::kNotFound, fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  while (true) {
    const size_t got = std::fread(chunk, 1, sizeof(chunk), f.get());
    bytes.insert(bytes.end(), chunk, chunk + got);
    if (got < sizeof(chunk)) break;
  }
  // fopen succeeds on a directory; the read error is what tells us.
  if (std::ferror(f.get())) {
    return Status(StatusCode::kIoError, fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
  }
  return bytes;
}

Status write_binary_file(const std::string& path, const void* data, size_t size) {
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) return Status(StatusCode::kIoError, fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
  if (size > 0 && std::fwrite(data, 1, size, f.get()) != size) {
    return Status(StatusCode::kIoError, fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
  }
  // fclose flushes; a full disk shows up here.
  if (std::fclose(f.release()) != 0) {
    return Status(StatusCode::kIoError, fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
  }
  return Status::ok();
}

Status write_text_file(const std::string& path, std::string_view text) {
  return write_binary_file(path, text.data(), text.size());
}

CLI::Validator at_least(double minimum) {
  return CLI::Validator(
      [minimum](std::string& value) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(value, v)) return fmt::format("'{}' is not a number", value);
        if (v < minimum) return fmt::format("must be >= {}, got {}", minimum, value);
        return {};
      },
      fmt::format(">={}", minimum));
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

std::string format_bytes(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  if (bytes < (1u << 20)) return fmt::format("{} bytes ({:.1f} KiB)", bytes, b / 1024.0);
  if (bytes < (1u << 30)) return fmt::format("{} bytes ({:.1f} MiB)", bytes, b / (1024.0 * 1024.0));
  return fmt::format("{} bytes ({:.2f} GiB)", bytes, b / (1024.0 * 1024.0 * 1024.0));
}

}  // namespace kiln::cli
