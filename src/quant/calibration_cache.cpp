#include "quant/calibration_cache.h"

#include <fmt/format.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace kiln::quant {
namespace {

constexpr std::string_view kHeaderPrefix = "TRT-";

// Trailing whitespace, including CRLF's '\r', is dropped; names never end a line, scales do.
std::string_view trim_end(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  return line;
}

// "<name>: <hex>" -> name and scale; an empty return, else what is wrong.
std::string parse_entry(std::string_view line, std::string* name, float* scale) {
  const size_t colon = line.rfind(": ");
  if (colon == std::string_view::npos) return "expected '<tensor name>: <hex scale>'";
  if (colon == 0) return "empty tensor name";
  *name = std::string(line.substr(0, colon));
  const std::string_view hex = line.substr(colon + 2);
  uint32_t bits = 0;
  const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), bits, 16);
  if (hex.empty() || hex.size() > 8 || ec != std::errc() || end != hex.data() + hex.size()) {
    return fmt::format("scale '{}' is not 1 to 8 hex digits", hex);
  }
  *scale = std::bit_cast<float>(bits);
  if (!std::isfinite(*scale) || *scale <= 0)
    return fmt::format("scale {} (hex {}) is not a finite positive float", *scale, hex);
  return "";
}

}  // namespace

Result<CalibrationCache> parse_calibration_cache(std::string_view text, CalibAlgo expected,
                                                 std::vector<std::string>* warnings) {
  CalibrationCache cache;
  bool have_header = false;
  int line_number = 0;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = trim_end(text.substr(0, eol));
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++line_number;
    if (line.empty()) continue;

    if (!have_header) {
      // "TRT-<version>-<algorithm>"; the version never contains '-'.
      const size_t dash = line.find('-', kHeaderPrefix.size());
      if (!line.starts_with(kHeaderPrefix) || dash == std::string_view::npos || dash + 1 == line.size()) {
        return Status(StatusCode::kParseError,
                      fmt::format("line {} '{}': not a calibration cache header (expected 'TRT-<version>-"
                                  "<algorithm>', e.g. 'TRT-{}-{}')",
                                  line_number, line, kCalibrationCacheVersion, trt_algo_name(expected)));
      }
      cache.version = std::string(line.substr(kHeaderPrefix.size(), dash - kHeaderPrefix.size()));
      cache.algorithm = std::string(line.substr(dash + 1));
      have_header = true;
      if (warnings && cache.version != kCalibrationCacheVersion) {
        warnings->push_back(fmt::format("calibration cache version {}, Kiln writes {}; reading it anyway",
                                        cache.version, kCalibrationCacheVersion));
      }
      if (warnings && cache.algorithm != trt_algo_name(expected)) {
        warnings->push_back(
            fmt::format("calibration cache made by {}, but {} ({}) was asked for; using its "
                        "scales anyway",
                        cache.algorithm, trt_algo_name(expected), calib_algo_name(expected)));
      }
      continue;
    }

    std::string name;
    float scale = 0;
    if (std::string error = parse_entry(line, &name, &scale); !error.empty()) {
      return Status(StatusCode::kParseError, fmt::format("line {} '{}': {}", line_number, line, error));
    }
    if (!cache.scales.emplace(name, scale).second) {
      return Status(StatusCode::kParseError,
                    fmt::format("line {}: tensor '{}' appears a second time", line_number, name));
    }
  }
  if (!have_header)
    return Status(StatusCode::kParseError, "empty calibration cache: no 'TRT-<version>-<algorithm>' header");
  return cache;
}

std::string write_calibration_cache(const CalibrationCache& cache) {
  std::string out = fmt::format("{}{}-{}\n", kHeaderPrefix, cache.version, cache.algorithm);
  for (const auto& [name, scale] : cache.scales) {
    out += fmt::format("{}: {:x}\n", name, std::bit_cast<uint32_t>(scale));
  }
  return out;
}

Result<CalibrationCache> read_calibration_cache_file(const std::string& path, CalibAlgo expected,
                                                     std::vector<std::string>* warnings) {
  const std::string where = fmt::format("calibration cache '{}'", path);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status(StatusCode::kNotFound, fmt::format("{}: no such file", where));
  if (std::filesystem::is_directory(path, ec))
    return Status(StatusCode::kIoError, fmt::format("{}: is a directory", where));
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(StatusCode::kIoError, fmt::format("{}: cannot open: {}", where, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status(StatusCode::kIoError, fmt::format("{}: read failed", where));

  std::vector<std::string> found;
  Result<CalibrationCache> cache = parse_calibration_cache(text.view(), expected, &found);
  if (!cache.is_ok()) return std::move(cache).take_status().with_context(where);
  if (warnings) {
    for (const auto& w : found) warnings->push_back(fmt::format("{}: {}", where, w));
  }
  return cache;
}

Status write_calibration_cache_file(const std::string& path, const CalibrationCache& cache) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status(StatusCode::kIoError, fmt::format("cannot write calibration cache '{}'", tmp));
    out << write_calibration_cache(cache);
    out.close();
    if (!out) return Status(StatusCode::kIoError, fmt::format("writing calibration cache '{}' failed", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return Status(StatusCode::kIoError, fmt::format("cannot replace calibration cache '{}'", path));
  }
  return Status::ok();
}

}  // namespace kiln::quant
