#include "data/npy_reader.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <bit>
#include <charconv>
#include <cmath>

#include "data/file_bytes.h"

namespace kiln::data {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
// Caps that turn a corrupt header into an error instead of a huge allocation: well past any calibration
// set (Fashion-MNIST train as float32 is 188 MB).
constexpr uint64_t kMaxElements = uint64_t{1} << 32;
constexpr uint64_t kMaxHeaderBytes = uint64_t{1} << 20;
constexpr uint64_t kMaxFileBytes = (kMaxElements << 3) + kMaxHeaderBytes + 16;

enum class Kind { kFloat, kSigned, kUnsigned, kBool };
struct DtypeInfo {
  std::string_view descr;
  Kind kind;
  int bytes;
};
constexpr DtypeInfo kDtypes[] = {
    {"<f4", Kind::kFloat, 4},  {"<f8", Kind::kFloat, 8},    {"<f2", Kind::kFloat, 2},  {"|u1", Kind::kUnsigned, 1},
    {"|i1", Kind::kSigned, 1}, {"|b1", Kind::kBool, 1},     {"<i2", Kind::kSigned, 2}, {"<u2", Kind::kUnsigned, 2},
    {"<i4", Kind::kSigned, 4}, {"<u4", Kind::kUnsigned, 4}, {"<i8", Kind::kSigned, 8}, {"<u8", Kind::kUnsigned, 8},
};

uint64_t load_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

float half_to_float(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(float(mantissa), -24);
  else if (exponent == 31)
    magnitude = mantissa ? NAN : INFINITY;
  else
    magnitude = std::ldexp(float(mantissa | 0x400), exponent - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

float element_to_float(const uint8_t* p, const DtypeInfo& t) {
  const uint64_t bits = load_le(p, t.bytes);
  switch (t.kind) {
    case Kind::kFloat:
      if (t.bytes == 2) return half_to_float(static_cast<uint16_t>(bits));
      if (t.bytes == 4) return std::bit_cast<float>(static_cast<uint32_t>(bits));
      return static_cast<float>(std::bit_cast<double>(bits));
    case Kind::kSigned: {
      const int shift = 64 - 8 * t.bytes;  // sign-extend
      return static_cast<float>(static_cast<int64_t>(bits << shift) >> shift);
    }
    case Kind::kUnsigned: return static_cast<float>(bits);
    case Kind::kBool: return bits ? 1.0f : 0.0f;
  }
  return 0;
}

// The header is a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }.
// Returns what follows `'key':` (spaces skipped), or an empty view when the key is absent.
std::string_view value_of(std::string_view header, std::string_view key) {
  for (char quote : {'\'', '"'}) {
    const std::string quoted = fmt::format("{}{}{}", quote, key, quote);
    size_t pos = header.find(quoted);
    if (pos == std::string_view::npos) continue;
    pos = header.find_first_not_of(" ", pos + quoted.size());
    if (pos == std::string_view::npos || header[pos] != ':') return {};
    pos = header.find_first_not_of(" ", pos + 1);
    return pos == std::string_view::npos ? std::string_view() : header.substr(pos);
  }
  return {};
}

// "(3, 4)", "(5,)", "()" -> dims; false when malformed.
bool parse_shape(std::string_view v, std::vector<int64_t>* dims) {
  if (v.empty() || v[0] != '(') return false;
  size_t pos = 1;
  while (true) {
    pos = v.find_first_not_of(" ", pos);
    if (pos == std::string_view::npos) return false;
    if (v[pos] == ')') return true;
    int64_t d = -1;
    const auto [end, ec] = std::from_chars(v.data() + pos, v.data() + v.size(), d);
    if (ec != std::errc() || d < 0) return false;
    dims->push_back(d);
    pos = v.find_first_not_of(" ", end - v.data());
    if (pos == std::string_view::npos) return false;
    if (v[pos] == ',')
      ++pos;
    else if (v[pos] != ')')
      return false;
  }
}

}  // namespace

Result<NpyArray> parse_npy(std::string_view bytes, const std::string& name) {
  auto fail = [&](StatusCode code, const std::string& msg) {
    return Status(code, fmt::format("npy file '{}': {}", name, msg));
  };
  if (bytes.size() < kMagic.size() + 2 || !bytes.starts_with(kMagic)) {
    return fail(StatusCode::kParseError, "bad magic: not a .npy file (expected \\x93NUMPY)");
  }
  const auto* u = reinterpret_cast<const uint8_t*>(bytes.data());
  const int major = u[6];
  if (major < 1 || major > 3)
    return fail(StatusCode::kUnsupported,
                fmt::format("format version {}.{} is not supported (1 to 3 are)", major, u[7]));
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t header_start = 8 + len_bytes;
  if (bytes.size() < header_start) return fail(StatusCode::kParseError, "truncated header");
  const uint64_t header_len = load_le(u + 8, static_cast<int>(len_bytes));
  if (header_len > kMaxHeaderBytes || bytes.size() - header_start < header_len) {
    return fail(StatusCode::kParseError, fmt::format("truncated header: it claims {} bytes, the file has {} after the "
                                                     "length field",
                                                     header_len, bytes.size() - header_start));
  }
  const std::string_view header = bytes.substr(header_start, header_len);

  NpyArray out;
  const std::string_view descr = value_of(header, "descr");
  const size_t descr_end = descr.empty() ? std::string_view::npos : descr.find(descr[0], 1);
  if (descr_end == std::string_view::npos || (descr[0] != '\'' && descr[0] != '"')) {
    return fail(StatusCode::kParseError, fmt::format("header has no 'descr' string: {}", header));
  }
  out.dtype = std::string(descr.substr(1, descr_end - 1));
  const std::string_view fortran = value_of(header, "fortran_order");
  if (fortran.starts_with("True")) {
    return fail(StatusCode::kUnsupported,
                "fortran_order is True; only C order is supported (save with "
                "np.ascontiguousarray)");
  }
  if (!fortran.starts_with("False"))
    return fail(StatusCode::kParseError, fmt::format("header has no fortran_order: {}", header));
  if (!parse_shape(value_of(header, "shape"), &out.dims)) {
    return fail(StatusCode::kParseError, fmt::format("header has no valid 'shape' tuple: {}", header));
  }

  const DtypeInfo* type = nullptr;
  for (const auto& t : kDtypes) {
    if (out.dtype == t.descr) type = &t;
  }
  if (!type) {
    const bool big_endian = out.dtype.starts_with('>');
    return fail(StatusCode::kUnsupported,
                big_endian ? fmt::format("dtype '{}' is big-endian; only little-endian data is supported", out.dtype)
                           : fmt::format("dtype '{}' is not supported (numeric: <f4 <f8 <f2 |u1 |i1 |b1 <i2 <u2 <i4 "
                                         "<u4 <i8 <u8)",
                                         out.dtype));
  }

  uint64_t count = 1;
  for (int64_t d : out.dims) {
    if (d != 0 && count > kMaxElements / static_cast<uint64_t>(d))
      return fail(StatusCode::kParseError, "shape describes more than 2^32 elements");
    count *= static_cast<uint64_t>(d);
  }
  const uint64_t data_bytes = count * static_cast<uint64_t>(type->bytes);
  const uint64_t available = bytes.size() - header_start - header_len;
  if (available < data_bytes) {
    return fail(StatusCode::kParseError, fmt::format("truncated data: shape ({}) of {} needs {} bytes, the file has {}",
                                                     fmt::join(out.dims, ", "), out.dtype, data_bytes, available));
  }
  if (available > data_bytes) {
    return fail(StatusCode::kParseError,
                fmt::format("{} trailing bytes after the {} data bytes", available - data_bytes, data_bytes));
  }
  const uint8_t* data = u + header_start + header_len;
  out.data.resize(count);
  for (uint64_t i = 0; i < count; ++i) out.data[i] = element_to_float(data + i * type->bytes, *type);
  return out;
}

Result<NpyArray> read_npy(const std::string& path) {
  Result<std::string> bytes = read_file_bytes(path, "npy file", kMaxFileBytes);
  if (!bytes.is_ok()) return std::move(bytes).take_status();
  return parse_npy(bytes.value(), path);
}

}  // namespace kiln::data
