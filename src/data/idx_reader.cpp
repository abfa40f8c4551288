#include "data/idx_reader.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zlib.h>

namespace kiln::data {
namespace {

// No IDX file we read comes anywhere near this; the cap turns a corrupt header into an error instead of
// a multi-gigabyte allocation.
constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 32;
constexpr uint8_t kTypeUnsignedByte = 0x08;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads exactly n bytes; returns the number actually read, or -1 on a zlib error (message in *err).
int64_t read_fully(gzFile f, uint8_t* dst, uint64_t n, std::string* err) {
  uint64_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(n - done, 1u << 30));
    const int got = gzread(f, dst + done, chunk);
    if (got < 0) {
      int errnum = 0;
      *err = gzerror(f, &errnum);
      return -1;
    }
    if (got == 0) break;
    done += static_cast<uint64_t>(got);
  }
  return static_cast<int64_t>(done);
}

}  // namespace

Result<IdxArray> read_idx(const std::string& path) {
  auto fail = [&](StatusCode code, const std::string& msg) {
    return Status(code, fmt::format("IDX file '{}': {}", path, msg));
  };
  errno = 0;
  GzFile file(gzopen(path.c_str(), "rb"));  // gzopen reads uncompressed files transparently
  if (!file) return fail(StatusCode::kNotFound, errno ? std::strerror(errno) : "cannot open");

  std::string err;
  uint8_t header[4];
  int64_t got = read_fully(file.get(), header, 4, &err);
  if (got < 0) return fail(StatusCode::kIoError, err);
  if (got < 4) return fail(StatusCode::kParseError, "too short for an IDX header");
  if (header[0] != 0 || header[1] != 0) {
    return fail(StatusCode::kParseError,
                fmt::format("bad magic {:02x} {:02x} (expected 00 00): not an IDX file", header[0], header[1]));
  }
  if (header[2] != kTypeUnsignedByte) {
    return fail(StatusCode::kUnsupported,
                fmt::format("data type 0x{:02x} is not supported (only 0x08, unsigned byte)", header[2]));
  }
  const int rank = header[3];
  if (rank == 0) return fail(StatusCode::kParseError, "zero dimensions");

  IdxArray out;
  uint64_t total = 1;
  for (int i = 0; i < rank; ++i) {
    uint8_t b[4];
    got = read_fully(file.get(), b, 4, &err);
    if (got < 0) return fail(StatusCode::kIoError, err);
    if (got < 4) return fail(StatusCode::kParseError, fmt::format("header truncated in dimension {}", i));
    const uint64_t d = (uint64_t{b[0]} << 24) | (uint64_t{b[1]} << 16) | (uint64_t{b[2]} << 8) | b[3];
    if (d == 0) return fail(StatusCode::kParseError, fmt::format("dimension {} is 0", i));
    total *= d;
    if (total > kMaxIdxBytes) return fail(StatusCode::kParseError, "dimensions describe more than 4 GiB of data");
    out.dims.push_back(static_cast<int64_t>(d));
  }

  out.data.resize(total);
  got = read_fully(file.get(), out.data.data(), total, &err);
  if (got < 0) return fail(StatusCode::kIoError, err);
  if (static_cast<uint64_t>(got) < total) {
    return fail(StatusCode::kParseError,
                fmt::format("truncated: header promises {} data bytes, file has {}", total, got));
  }
  uint8_t extra;
  got = read_fully(file.get(), &extra, 1, &err);
  if (got < 0) return fail(StatusCode::kIoError, err);
  if (got > 0) return fail(StatusCode::kParseError, fmt::format("trailing bytes after {} data bytes", total));
  return out;
}

Result<std::vector<uint8_t>> read_idx_labels(const std::string& path) {
  Result<IdxArray> idx = read_idx(path);
  if (!idx.is_ok()) return std::move(idx).take_status();
  if (idx->dims.size() != 1) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("IDX file '{}': labels must have one dimension [N], it has shape [{}]", path,
                              fmt::join(idx->dims, ", ")));
  }
  return std::move(idx->data);
}

std::string labels_path_for_images(const std::string& images_path) {
  for (const auto& [images, labels] : {std::pair{"images-idx3-ubyte", "labels-idx1-ubyte"},
                                       std::pair{"images.idx3-ubyte", "labels.idx1-ubyte"}}) {
    for (const char* suffix : {"", ".gz"}) {
      const std::string tail = fmt::format("{}{}", images, suffix);
      if (images_path.ends_with(tail)) {
        return images_path.substr(0, images_path.size() - tail.size()) + labels + suffix;
      }
    }
  }
  return "";
}

}  // namespace kiln::data
