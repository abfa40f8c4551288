// Float32 exp/sigmoid/tanh written as straight-line arithmetic so that loops calling them vectorize
// (libm's expf/tanhf are scalar calls without -ffast-math). Accuracy: a few ulp, checked against
// std::exp/std::tanh in tests/ops/test_vec_math.cpp.
#pragma once
#include <bit>
#include <cstdint>

namespace kiln::cpu {

// exp(x): x = n*ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 (Cephes) polynomial, 2^n from the exponent
// bits. Inputs are clamped to the finite range: exp(-inf) gives ~1e-38 instead of 0, exp(+inf) ~3e38.
inline float fast_exp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.37f ? 88.37f : x;
  // Round to nearest by adding and removing 1.5*2^23 (cheaper than a select; breaks under -ffast-math).
  const float nf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const int32_t n = static_cast<int32_t>(nf);
  float r = x - nf * 0.693359375f;
  r = r + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((n + 127) << 23);
}

inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// tanh(|x|) = 1 - 2 / (exp(2|x|) + 1), except near 0 where that cancels: there an odd Taylor polynomial
// (error below 1e-8 relative for |x| < 0.2).
inline float fast_tanh(float x) {
  const float a = x < 0 ? -x : x;
  const float e = fast_exp(2.0f * a);
  const float big = 1.0f - 2.0f / (e + 1.0f);
  const float a2 = a * a;
  const float small = a * (1.0f + a2 * (-0.333333333f + a2 * (0.133333333f + a2 * -0.053968254f)));
  const float y = a < 0.2f ? small : big;
  return x < 0 ? -y : y;
}

}  // namespace kiln::cpu
