#include "host_buffers.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "cli_common.h"

namespace kiln::cli {

HostBuffer::HostBuffer(size_t bytes) : size_(bytes) {
  // aligned_alloc wants a multiple of the alignment; one spare line also makes 0 bytes a valid pointer.
  const size_t rounded = (bytes + 63) / 64 * 64 + 64;
  data_.reset(static_cast<uint8_t*>(std::aligned_alloc(64, rounded)));
  if (data_) std::memset(data_.get(), 0, rounded);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t float_to_half(float f) {
  // Round-to-nearest-even; only used for random inputs in [-1, 1], but correct for all finite values.
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;  // may carry into the exponent: fine
  return static_cast<uint16_t>(sign | half);
}

void fill_random(HostBuffer& buffer, DataType dtype, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed ^ (seed >> 32)));
  // 24 random bits -> [-1, 1]; exact in float32.
  auto unit = [&] { return static_cast<float>(rng() >> 8) * (2.0f / 16777215.0f) - 1.0f; };
  auto small_int = [&] { return static_cast<int64_t>(rng() % 4); };
  const size_t elem = dtype_size(dtype);
  if (elem == 0) return;
  const size_t n = buffer.size() / elem;
  uint8_t* p = buffer.data();
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case DataType::kFloat32: reinterpret_cast<float*>(p)[i] = unit(); break;
      case DataType::kFloat64: reinterpret_cast<double*>(p)[i] = unit(); break;
      case DataType::kFloat16: reinterpret_cast<uint16_t*>(p)[i] = float_to_half(unit()); break;
      case DataType::kInt32: reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(small_int()); break;
      case DataType::kInt64: reinterpret_cast<int64_t*>(p)[i] = small_int(); break;
      case DataType::kInt8: reinterpret_cast<int8_t*>(p)[i] = static_cast<int8_t>(small_int()); break;
      case DataType::kUInt8: p[i] = static_cast<uint8_t>(small_int()); break;
      case DataType::kBool: p[i] = static_cast<uint8_t>(rng() & 1u); break;
      case DataType::kUndefined: return;
    }
  }
}

Status load_raw_file(const std::string& tensor, const std::string& path, HostBuffer& buffer) {
  Result<std::vector<uint8_t>> bytes = read_binary_file(path);
  if (!bytes.is_ok()) return std::move(bytes).take_status().with_context(fmt::format("--loadInputs '{}'", tensor));
  if (bytes->size() != buffer.size()) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("--loadInputs: file '{}' for input '{}' has {} bytes, expected {}", path, tensor,
                              bytes->size(), buffer.size()));
  }
  std::memcpy(buffer.data(), bytes->data(), buffer.size());
  return Status::ok();
}

nlohmann::ordered_json values_to_json(const uint8_t* data, DataType dtype, int64_t count) {
  nlohmann::ordered_json values = nlohmann::ordered_json::array();
  values.get_ptr<nlohmann::ordered_json::array_t*>()->reserve(static_cast<size_t>(std::max<int64_t>(count, 0)));
  for (int64_t i = 0; i < count; ++i) {
    switch (dtype) {
      case DataType::kFloat32: values.push_back(reinterpret_cast<const float*>(data)[i]); break;
      case DataType::kFloat64: values.push_back(reinterpret_cast<const double*>(data)[i]); break;
      case DataType::kFloat16: values.push_back(half_to_float(reinterpret_cast<const uint16_t*>(data)[i])); break;
      case DataType::kInt32: values.push_back(reinterpret_cast<const int32_t*>(data)[i]); break;
      case DataType::kInt64: values.push_back(reinterpret_cast<const int64_t*>(data)[i]); break;
      case DataType::kInt8: values.push_back(static_cast<int>(reinterpret_cast<const int8_t*>(data)[i])); break;
      case DataType::kUInt8: values.push_back(static_cast<int>(data[i])); break;
      case DataType::kBool: values.push_back(data[i] != 0); break;
      case DataType::kUndefined: return values;
    }
  }
  return values;
}

std::vector<double> values_to_doubles(const uint8_t* data, DataType dtype, int64_t count) {
  std::vector<double> v(static_cast<size_t>(std::max<int64_t>(count, 0)));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (dtype) {
      case DataType::kFloat32: v[i] = reinterpret_cast<const float*>(data)[i]; break;
      case DataType::kFloat64: v[i] = reinterpret_cast<const double*>(data)[i]; break;
      case DataType::kFloat16: v[i] = half_to_float(reinterpret_cast<const uint16_t*>(data)[i]); break;
      case DataType::kInt32: v[i] = reinterpret_cast<const int32_t*>(data)[i]; break;
      case DataType::kInt64: v[i] = static_cast<double>(reinterpret_cast<const int64_t*>(data)[i]); break;
      case DataType::kInt8: v[i] = reinterpret_cast<const int8_t*>(data)[i]; break;
      case DataType::kUInt8: v[i] = data[i]; break;
      case DataType::kBool: v[i] = data[i] != 0; break;
      case DataType::kUndefined: return {};
    }
  }
  return v;
}

void doubles_to_values(const std::vector<double>& values, DataType dtype, uint8_t* data) {
  for (size_t i = 0; i < values.size(); ++i) {
    const double x = values[i];
    switch (dtype) {
      case DataType::kFloat32: reinterpret_cast<float*>(data)[i] = static_cast<float>(x); break;
      case DataType::kFloat64: reinterpret_cast<double*>(data)[i] = x; break;
      case DataType::kFloat16: reinterpret_cast<uint16_t*>(data)[i] = float_to_half(static_cast<float>(x)); break;
      case DataType::kInt32: reinterpret_cast<int32_t*>(data)[i] = static_cast<int32_t>(std::lround(x)); break;
      case DataType::kInt64: reinterpret_cast<int64_t*>(data)[i] = std::llround(x); break;
      case DataType::kInt8: reinterpret_cast<int8_t*>(data)[i] = static_cast<int8_t>(std::clamp(std::lround(x), -128L, 127L)); break;
      case DataType::kUInt8: data[i] = static_cast<uint8_t>(std::clamp(std::lround(x), 0L, 255L)); break;
      case DataType::kBool: data[i] = x != 0; break;
      case DataType::kUndefined: return;
    }
  }
}

}  // namespace kiln::cli
