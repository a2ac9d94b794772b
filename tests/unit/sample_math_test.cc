// The sampler's log and 1 - exp(-y) against libm's, over the inputs the
// sampler passes them.
#include "alloc/sample_math.h"

#include <cmath>

#include "gtest/gtest.h"

namespace memward::alloc {
namespace {

constexpr double kTolerance = 1e-13;

double RelativeError(double value, double expected) {
  return std::fabs(value - expected) / std::fabs(expected);
}

TEST(SampleMath, NegativeLogMatchesLibm) {
  // Uniform draws as DrawGap makes them: k * 2^-53 for k in [1, 2^53].
  const double kSmallest = 0x1.0p-53;
  EXPECT_LT(RelativeError(NegativeLog(kSmallest), -std::log(kSmallest)), kTolerance);
  EXPECT_EQ(NegativeLog(1.0), 0.0);
  for (double u = 1e-15; u < 1.0; u *= 1.0137) {
    ASSERT_LT(RelativeError(NegativeLog(u), -std::log(u)), kTolerance) << u;
  }
  for (int i = 1; i < 100000; i++) {
    const double u = 1.0 - i * 1e-7;  // near 1, where -log(u) is small
    ASSERT_LT(RelativeError(NegativeLog(u), -std::log(u)), kTolerance) << u;
  }
}

TEST(SampleMath, OneMinusExpMinusMatchesLibm) {
  // Sizes over the interval: from 1 byte at a 1 GiB interval to 1 TiB at 1 byte.
  for (double y = 1e-10; y < 1e12; y *= 1.0173) {
    ASSERT_LT(RelativeError(OneMinusExpMinus(y), -std::expm1(-y)), kTolerance) << y;
  }
  for (double y = 0.4; y < 0.6; y += 1e-4) {  // both sides of the series' limit
    ASSERT_LT(RelativeError(OneMinusExpMinus(y), -std::expm1(-y)), kTolerance) << y;
  }
  EXPECT_EQ(OneMinusExpMinus(0.0), 0.0);
}

}  // namespace
}  // namespace memward::alloc
