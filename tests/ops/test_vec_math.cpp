// Accuracy of the vectorizable float32 exp/sigmoid/tanh used by the CPU kernels.
#include <cmath>

#include <gtest/gtest.h>

#include "backends/cpu/vec_math.h"

namespace kiln::cpu {
namespace {

// Relative error against the float64 function over a dense sweep of [lo, hi].
template <class Fast, class Exact>
double max_rel_error(Fast fast, Exact exact, double lo, double hi, int steps = 200001) {
  double worst = 0;
  for (int i = 0; i < steps; ++i) {
    const float x = static_cast<float>(lo + (hi - lo) * i / (steps - 1));
    const double ref = exact(static_cast<double>(x));
    if (ref == 0) continue;
    worst = std::max(worst, std::fabs(fast(x) - ref) / std::fabs(ref));
  }
  return worst;
}

TEST(OpVecMath, ExpIsWithinAFewUlp) {
  EXPECT_LT(max_rel_error(fast_exp, [](double x) { return std::exp(x); }, -87, 88), 5e-7);
  EXPECT_EQ(fast_exp(0.f), 1.f);
  EXPECT_GT(fast_exp(-1000.f), 0.f);  // clamped, never NaN
  EXPECT_TRUE(std::isfinite(fast_exp(1000.f)));
}

TEST(OpVecMath, Sigmoid) {
  auto exact = [](double x) { return 1 / (1 + std::exp(-x)); };
  EXPECT_LT(max_rel_error(fast_sigmoid, exact, -80, 80), 1e-6);
  EXPECT_EQ(fast_sigmoid(200.f), 1.f);
  EXPECT_LT(fast_sigmoid(-200.f), 1e-30f);
}

TEST(OpVecMath, Tanh) {
  auto exact = [](double x) { return std::tanh(x); };
  EXPECT_LT(max_rel_error(fast_tanh, exact, -20, 20), 1e-6);
  EXPECT_LT(max_rel_error(fast_tanh, exact, -0.3, 0.3), 1e-6);
  EXPECT_LT(max_rel_error(fast_tanh, exact, -1e-5, 1e-5, 2001), 1e-6);
  EXPECT_EQ(fast_tanh(100.f), 1.f);
  EXPECT_EQ(fast_tanh(-100.f), -1.f);
  EXPECT_EQ(fast_tanh(0.f), 0.f);
}

}  // namespace
}  // namespace kiln::cpu
