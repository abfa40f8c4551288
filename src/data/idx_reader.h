// Reader for IDX files (the MNIST / Fashion-MNIST container), plain or gzip-compressed.
// Format: two zero bytes, a type code, the number of dims, then one big-endian uint32 per dim, then
// the data row-major. Only unsigned-byte data (type 0x08) is accepted: that is what image and label
// files hold, and anything else here is more likely a wrong file than a wanted feature.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::data {

struct IdxArray {
  std::vector<int64_t> dims;  // e.g. {10000, 28, 28} for images, {10000} for labels
  std::vector<uint8_t> data;  // row-major, product(dims) bytes
};

// Reads the whole file; gzip is detected from the content, not the name. Every failure names the file:
// missing file, bad magic, unsupported type, zero or absurd dims, truncated data, trailing bytes.
Result<IdxArray> read_idx(const std::string& path);

// A label file: read_idx, which must give one dimension.
Result<std::vector<uint8_t>> read_idx_labels(const std::string& path);

// The label file beside an image file by the MNIST naming convention: "...images-idx3-ubyte[.gz]" ->
// "...labels-idx1-ubyte[.gz]" (also "images.idx3-ubyte"); "" when the name does not follow it.
std::string labels_path_for_images(const std::string& images_path);

}  // namespace kiln::data
