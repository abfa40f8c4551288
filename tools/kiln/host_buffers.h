// Host memory for IO tensors and what the CLI puts in it: deterministic random data (never zeros, so a
// kernel that ignores its input cannot look correct), raw files like trtexec's --loadInputs, and the
// JSON form of output values for --exportOutput.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::cli {

// 64-byte aligned so kernels can use aligned vector loads on caller memory.
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(size_t bytes);
  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool allocated() const { return data_ != nullptr; }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
};

// Fixed seed: runs are reproducible across machines (std::mt19937 is fully specified; the mapping
// to values is ours, not a library distribution's). Floats uniform in [-1, 1]; ints in [0, 3];
// bool 0/1.
void fill_random(HostBuffer& buffer, DataType dtype, uint64_t seed);

// Copies a raw little-endian file into the buffer; the file must be exactly buffer.size() bytes.
// The error names the tensor, the file, the expected and the actual size.
Status load_raw_file(const std::string& tensor, const std::string& path, HostBuffer& buffer);

// Values as a JSON array of numbers (float16 widened to float).
nlohmann::ordered_json values_to_json(const uint8_t* data, DataType dtype, int64_t count);

// Values widened to float64 (float16 widened, integers exact, bool 0/1), for error metrics.
std::vector<double> values_to_doubles(const uint8_t* data, DataType dtype, int64_t count);
// The inverse, as a conversion to dtype would do it (integers round to nearest), into count elements.
void doubles_to_values(const std::vector<double>& values, DataType dtype, uint8_t* data);

float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

}  // namespace kiln::cli
