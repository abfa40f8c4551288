// IEEE 754 binary16 conversions (round to nearest even), shared by the Cast reference, the cast kernel
// and reference_eval. Software conversion: these paths are folding and casting, not hot loops.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace kiln {

inline double half_to_double(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0) v = std::ldexp(static_cast<double>(mant), -24);
  else if (exp == 31) v = mant ? NAN : INFINITY;
  else v = std::ldexp(1.0 + mant / 1024.0, exp - 15);
  return sign ? -v : v;
}

// Rounds directly from double, so float32 and float64 sources round the same way (no double rounding).
inline uint16_t double_to_half(double x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  if (std::isnan(x)) return sign | 0x7e00;
  const double a = std::fabs(x);
  if (a >= 65520.0) return sign | 0x7c00;  // 65520 is the tie between 65504 and 2^16: rounds to inf
  if (a < 0x1p-14) {
    // Subnormal: units of 2^-24. A result of 1024 is the smallest normal, whose encoding is 0x400.
    return sign | static_cast<uint16_t>(std::nearbyint(a * 0x1p24));
  }
  int e2 = 0;
  std::frexp(a, &e2);  // a = m * 2^e2, m in [0.5, 1)
  int exp = e2 - 1;
  double mant = std::nearbyint((std::ldexp(a, -exp) - 1.0) * 1024.0);
  if (mant >= 1024.0) {
    mant = 0;
    ++exp;
  }
  if (exp > 15) return sign | 0x7c00;
  return sign | static_cast<uint16_t>(((exp + 15) << 10) | static_cast<int>(mant));
}

// Same result as double_to_half for a float input, on bits only (after F. Giesen's float_to_half_fast3_rtne):
// the hot path of float32 -> float16 casts. Relies on the default rounding mode for subnormals.
inline uint16_t float_to_half(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint16_t o;
  if (x >= 0x47800000u) {  // >= 65536 after rounding: inf, or NaN (quieted)
    o = x > 0x7f800000u ? 0x7e00 : 0x7c00;
  } else if (x < 0x38800000u) {  // below the smallest normal half: let the FPU round into the subnormal slot
    const float denorm_magic = std::bit_cast<float>(uint32_t{((127 - 15) + (23 - 10) + 1) << 23});
    o = static_cast<uint16_t>(std::bit_cast<uint32_t>(std::bit_cast<float>(x) + denorm_magic) -
                              std::bit_cast<uint32_t>(denorm_magic));
  } else {
    const uint32_t mant_odd = (x >> 13) & 1;  // ties to even
    x += (static_cast<uint32_t>(15 - 127) << 23) + 0xfff + mant_odd;
    o = static_cast<uint16_t>(x >> 13);
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

// Value x takes after a round trip through float16 (used by references that model a cast).
inline double round_to_half(double x) { return half_to_double(double_to_half(x)); }

}  // namespace kiln
