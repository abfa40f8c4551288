#include "data/calibration_data.h"

#include <charconv>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include "data/file_bytes.h"
#include "data/idx_reader.h"
#include "data/npy_reader.h"

namespace kiln::data {
namespace {

static_assert(std::endian::native == std::endian::little, "raw float32 files are read without byte swapping");

// Per-sample shapes past this are not model inputs but corrupt values; the cap keeps products in range.
constexpr int64_t kMaxSampleVolume = int64_t{1} << 31;
constexpr uint64_t kMaxRawBytes = uint64_t{1} << 34;

enum class FileKind { kIdx, kNpy, kRaw };

FileKind kind_of(const std::string& path) {
  auto has_ext = [&](const char* ext) { return path.ends_with(ext); };
  if (has_ext(".npy")) return FileKind::kNpy;
  if (has_ext(".bin") || has_ext(".raw")) return FileKind::kRaw;
  if (has_ext(".gz")) return FileKind::kIdx;
  // By content: gzip magic, IDX magic (00 00 <type>), npy magic; else raw. A missing file falls through
  // to raw, whose reader reports it.
  unsigned char head[6] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(head), sizeof head);
  if (head[0] == 0x1f && head[1] == 0x8b) return FileKind::kIdx;
  if (head[0] == 0 && head[1] == 0 && head[2] >= 0x08 && head[2] <= 0x0e) return FileKind::kIdx;
  if (in.gcount() == 6 && std::memcmp(head, "\x93NUMPY", 6) == 0) return FileKind::kNpy;
  return FileKind::kRaw;
}

std::string shape_string(const Dims& d) { return fmt::format("[{}]", fmt::join(d, ", ")); }

// How many samples a [N, ...] array holds; `whole_sample_ok`: an array of exactly the per-sample shape is
// one sample (npy).
Result<int64_t> sample_count(const std::string& path, const Dims& dims, const Dims& sample_shape,
                             bool whole_sample_ok) {
  const int64_t want = volume(sample_shape);
  if (whole_sample_ok && dims == sample_shape) return int64_t{1};
  int64_t per_sample = 1;
  for (size_t i = 1; i < dims.size(); ++i) per_sample *= dims[i];  // readers cap the total at 2^32
  if (!dims.empty() && per_sample == want) return dims[0];
  return Status(StatusCode::kInvalidArgument,
                fmt::format("'{}' has shape {} ({} values per sample), but the model input takes samples of shape "
                            "{} ({} values)",
                            path, shape_string(dims), dims.empty() ? 0 : per_sample, shape_string(sample_shape), want));
}

}  // namespace

Result<CalibrationBatches> CalibrationBatches::open(const std::string& spec, const Dims& per_sample_shape,
                                                    const Normalization& normalization) {
  CalibrationBatches b;
  b.sample_shape_ = per_sample_shape;
  b.sample_volume_ = 1;
  for (int64_t d : per_sample_shape) {
    if (d <= 0 || b.sample_volume_ > kMaxSampleVolume / d) {
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("calibration data: per-sample shape {} must have fixed positive dims and at most "
                                "2^31 values",
                                shape_string(per_sample_shape)));
    }
    b.sample_volume_ *= d;
  }
  const Normalization& n = normalization;
  if (!std::isfinite(n.scale) || !std::isfinite(n.mean) || !std::isfinite(n.std) || n.std == 0) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("calibration data: normalization scale {}, mean {}, std {} is not usable (finite "
                              "values, std not 0)",
                              n.scale, n.mean, n.std));
  }
  for (int p = 0; p < 256; ++p) b.pixel_values_[p] = static_cast<float>((p * n.scale - n.mean) / n.std);

  size_t begin = 0;
  while (true) {
    const size_t comma = spec.find(',', begin);
    std::string path = spec.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    path.erase(0, path.find_first_not_of(" \t"));
    path.erase(path.find_last_not_of(" \t") + 1);
    if (path.empty()) {
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("calibration data '{}': empty file name in the comma-separated list", spec));
    }
    if (Status st = b.add_file(path); !st.is_ok()) return st;
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  if (b.samples_ == 0)
    return Status(StatusCode::kInvalidArgument, fmt::format("calibration data '{}' holds no samples", spec));
  return b;
}

Status CalibrationBatches::add_file(const std::string& path) {
  Part part;
  part.path = path;
  switch (kind_of(path)) {
    case FileKind::kIdx: {
      Result<IdxArray> idx = read_idx(path);
      if (!idx.is_ok()) return std::move(idx).take_status();
      if (idx->dims.size() < 2) {
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("IDX file '{}' has shape {}: a label file? Images are [N, rows, cols]", path,
                                  shape_string(idx->dims)));
      }
      Result<int64_t> count = sample_count(path, idx->dims, sample_shape_, false);
      if (!count.is_ok()) return std::move(count).take_status();
      part.count = *count;
      part.pixels = std::make_shared<const std::vector<uint8_t>>(std::move(idx->data));
      break;
    }
    case FileKind::kNpy: {
      Result<NpyArray> npy = read_npy(path);
      if (!npy.is_ok()) return std::move(npy).take_status();
      Result<int64_t> count = sample_count(path, npy->dims, sample_shape_, true);
      if (!count.is_ok()) return std::move(count).take_status();
      part.count = *count;
      part.values = std::make_shared<const std::vector<float>>(std::move(npy->data));
      break;
    }
    case FileKind::kRaw: {
      Result<std::string> bytes = read_file_bytes(path, "raw float32 file", kMaxRawBytes);
      if (!bytes.is_ok()) return std::move(bytes).take_status();
      const uint64_t sample_bytes = static_cast<uint64_t>(sample_volume_) * sizeof(float);
      if (bytes->empty() || bytes->size() % sample_bytes != 0) {
        return Status(StatusCode::kInvalidArgument,
                      fmt::format("raw float32 file '{}' has {} bytes, not a positive multiple of one sample's {} "
                                  "bytes (shape {})",
                                  path, bytes->size(), sample_bytes, shape_string(sample_shape_)));
      }
      auto values = std::make_shared<std::vector<float>>(bytes->size() / sizeof(float));
      std::memcpy(values->data(), bytes->data(), bytes->size());
      part.count = static_cast<int64_t>(bytes->size() / sample_bytes);
      part.values = std::move(values);
      break;
    }
  }
  samples_ += part.count;
  parts_.push_back(std::move(part));
  return Status::ok();
}

void CalibrationBatches::copy_samples(int64_t first, int64_t count, float* out) const {
  for (const Part& part : parts_) {
    if (count <= 0) break;
    if (first >= part.count) {
      first -= part.count;
      continue;
    }
    const int64_t n = std::min(count, part.count - first);
    const size_t begin = static_cast<size_t>((part.first + first) * sample_volume_);
    const size_t size = static_cast<size_t>(n * sample_volume_);
    if (part.pixels) {
      const uint8_t* src = part.pixels->data() + begin;
      for (size_t i = 0; i < size; ++i) out[i] = pixel_values_[src[i]];
    } else {
      std::memcpy(out, part.values->data() + begin, size * sizeof(float));
    }
    out += size;
    count -= n;
    first = 0;
  }
}

bool CalibrationBatches::next(int64_t batch, std::vector<float>* out, int64_t* rows) {
  *rows = std::min(std::max<int64_t>(batch, 1), samples_ - cursor_);
  if (*rows <= 0) {
    *rows = 0;
    return false;
  }
  out->resize(static_cast<size_t>(*rows * sample_volume_));
  copy_samples(cursor_, *rows, out->data());
  cursor_ += *rows;
  return true;
}

Result<CalibrationBatches> CalibrationBatches::slice(int64_t first, int64_t count) const {
  if (first < 0 || count < 0 || first > samples_ || count > samples_ - first) {
    return Status(StatusCode::kOutOfRange, fmt::format("calibration data: {} samples from sample {} are outside the {} "
                                                       "samples available",
                                                       count, first, samples_));
  }
  CalibrationBatches s = *this;
  s.parts_.clear();
  s.samples_ = count;
  s.cursor_ = 0;
  for (const Part& part : parts_) {
    if (count == 0) break;
    if (first >= part.count) {
      first -= part.count;
      continue;
    }
    Part p = part;
    p.first += first;
    p.count = std::min(count, part.count - first);
    count -= p.count;
    first = 0;
    s.parts_.push_back(std::move(p));
  }
  return s;
}

Result<Normalization> normalization_from_metadata(const std::map<std::string, std::string>& metadata) {
  Normalization n;
  for (auto [key, field] : {std::pair{"input_scale", &n.scale}, std::pair{"normalize_mean", &n.mean},
                            std::pair{"normalize_std", &n.std}}) {
    auto it = metadata.find(key);
    if (it == metadata.end()) continue;
    double x = 0;
    auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), x);
    if (ec != std::errc() || p != it->second.data() + it->second.size() || !std::isfinite(x))
      return Status(StatusCode::kParseError, fmt::format("model metadata '{}' = '{}' is not a number", key, it->second));
    *field = x;
  }
  return n;
}

}  // namespace kiln::data
