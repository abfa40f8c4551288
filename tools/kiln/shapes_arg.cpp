#include "shapes_arg.h"

#include <charconv>
#include <set>

#include <fmt/format.h>

namespace kiln::cli {

std::vector<std::string> split_list(const std::vector<std::string>& values) {
  std::vector<std::string> items;
  for (const std::string& value : values) {
    size_t start = 0;
    while (start <= value.size()) {
      size_t comma = value.find(',', start);
      if (comma == std::string::npos) comma = value.size();
      if (comma > start) items.push_back(value.substr(start, comma - start));
      start = comma + 1;
    }
  }
  return items;
}

namespace {

Status bad(std::string_view flag, std::string msg) {
  return Status(StatusCode::kParseError, fmt::format("{}: {}", flag, msg));
}

// "1x1x28x28" -> {1,1,28,28}; the error names the offending token and the whole item.
Result<Dims> parse_dims(std::string_view flag, std::string_view text, const std::string& item) {
  Dims dims;
  if (text.empty()) return dims;  // scalar
  size_t start = 0;
  while (true) {
    size_t x = text.find('x', start);
    std::string_view token = text.substr(start, x == std::string_view::npos ? std::string_view::npos : x - start);
    int64_t value = 0;
    const char* end = token.data() + token.size();
    auto [ptr, ec] = std::from_chars(token.data(), end, value);
    if (token.empty() || ec != std::errc() || ptr != end || value < 0) {
      return bad(flag, fmt::format("bad dimension '{}' in '{}'", token, item));
    }
    dims.push_back(value);
    if (x == std::string_view::npos) break;
    start = x + 1;
  }
  return dims;
}

}  // namespace

Result<std::vector<NamedShape>> parse_shapes(std::string_view flag, const std::vector<std::string>& values) {
  std::vector<NamedShape> shapes;
  std::set<std::string> seen;
  for (const std::string& item : split_list(values)) {
    size_t colon = item.rfind(':');
    if (colon == std::string::npos) {
      return bad(flag, fmt::format("expected name:dims (e.g. input:1x1x28x28), got '{}'", item));
    }
    if (colon == 0) return bad(flag, fmt::format("missing tensor name in '{}'", item));
    Result<Dims> dims = parse_dims(flag, std::string_view(item).substr(colon + 1), item);
    if (!dims.is_ok()) return std::move(dims).take_status();
    std::string name = item.substr(0, colon);
    if (!seen.insert(name).second) return bad(flag, fmt::format("tensor '{}' given twice", name));
    shapes.push_back({std::move(name), std::move(dims).value()});
  }
  return shapes;
}

Result<std::vector<NamedFile>> parse_named_files(std::string_view flag, const std::vector<std::string>& values,
                                                 const std::vector<std::string>& known_names) {
  std::set<std::string> known(known_names.begin(), known_names.end());
  std::vector<NamedFile> files;
  std::set<std::string> seen;
  for (const std::string& item : split_list(values)) {
    size_t split = std::string::npos;
    for (size_t pos = item.find(':'); pos != std::string::npos; pos = item.find(':', pos + 1)) {
      if (known.count(item.substr(0, pos))) {
        split = pos;
        break;
      }
    }
    if (split == std::string::npos) split = item.find(':');
    if (split == std::string::npos) {
      return bad(flag, fmt::format("expected name:file (e.g. input:input.bin), got '{}'", item));
    }
    if (split == 0) return bad(flag, fmt::format("missing tensor name in '{}'", item));
    if (split + 1 == item.size()) return bad(flag, fmt::format("missing file name in '{}'", item));
    std::string name = item.substr(0, split);
    if (!seen.insert(name).second) return bad(flag, fmt::format("tensor '{}' given twice", name));
    files.push_back({std::move(name), item.substr(split + 1)});
  }
  return files;
}

}  // namespace kiln::cli
