#include "data/file_bytes.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace kiln::data {

Result<std::string> read_file_bytes(const std::string& path, std::string_view what, uint64_t max_bytes) {
  auto fail = [&](StatusCode code, const std::string& msg) {
    return Status(code, fmt::format("{} '{}': {}", what, path, msg));
  };
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) return fail(StatusCode::kNotFound, "no such file");
  if (std::filesystem::is_directory(status)) return fail(StatusCode::kInvalidArgument, "is a directory");
  errno = 0;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return fail(StatusCode::kIoError, errno ? std::strerror(errno) : "cannot open");
  const std::streamoff size = in.tellg();
  if (size < 0) return fail(StatusCode::kIoError, "cannot tell its size");
  if (static_cast<uint64_t>(size) > max_bytes) {
    return fail(StatusCode::kInvalidArgument,
                fmt::format("{} bytes is more than the {} bytes allowed", size, max_bytes));
  }
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), size)) return fail(StatusCode::kIoError, "read failed");
  return bytes;
}

}  // namespace kiln::data
