// The growth forecast fed readings with their times: the rate, its decay
// while the working set does not grow, the read delays and the early reclaim
// point.
#include "accounting/pressure_forecast.h"

#include <gtest/gtest.h>

namespace memward::accounting {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr int64_t kMs = 1000 * 1000;
constexpr double kHundredMiBPerS = 100.0 * kMiB;

// Feeds readings of a working set growing at 100 MiB/s, one every `step_ms`.
GrowthForecast GrowingAt100MiBPerS(int readings, int64_t step_ms) {
  GrowthForecast forecast;
  for (int i = 0; i < readings; i++) {
    const int64_t now = (1000 + i * step_ms) * kMs;
    forecast.Note(now, static_cast<uint64_t>(i * step_ms) * kMiB / 10);
  }
  return forecast;
}

TEST(GrowthForecastTest, MeasuresSteadyGrowth) {
  GrowthForecast forecast = GrowingAt100MiBPerS(11, 10);
  EXPECT_NEAR(forecast.rate(), kHundredMiBPerS, kHundredMiBPerS * 0.01);
}

TEST(GrowthForecastTest, WaitsForAWindow) {
  GrowthForecast forecast;
  forecast.Note(1000 * kMs, 0);
  forecast.Note(1010 * kMs, 10 * kMiB);  // 10 ms: shorter than a window
  EXPECT_EQ(forecast.rate(), 0);
  forecast.Note(1020 * kMs, 20 * kMiB);
  EXPECT_GT(forecast.rate(), 0);
}

TEST(GrowthForecastTest, HalvesWhileStandingStill) {
  GrowthForecast forecast = GrowingAt100MiBPerS(5, 20);  // last reading 8 MiB at 1080 ms
  const double growing = forecast.rate();
  forecast.Note(1100 * kMs, 8 * kMiB);
  EXPECT_NEAR(forecast.rate(), growing / 2, 1);
  forecast.Note(1120 * kMs, 8 * kMiB);
  EXPECT_NEAR(forecast.rate(), growing / 4, 1);
  for (int64_t now = 1140; now < 1800; now += 20) forecast.Note(now * kMs, 8 * kMiB);
  EXPECT_EQ(forecast.rate(), 0) << "a rate below kMinRateBytesPerS is 0";
}

TEST(GrowthForecastTest, RestartSkipsTheDrop) {
  GrowthForecast forecast = GrowingAt100MiBPerS(5, 20);
  const double growing = forecast.rate();
  // A reclaim brings the working set from 8 MiB down to 2 MiB; the reading
  // after it starts the next window, so the drop does not count.
  forecast.Restart();
  forecast.Note(1100 * kMs, 2 * kMiB);
  EXPECT_EQ(forecast.rate(), growing);
  forecast.Note(1120 * kMs, 4 * kMiB);
  EXPECT_NEAR(forecast.rate(), kHundredMiBPerS, kHundredMiBPerS * 0.01);
}

TEST(GrowthForecastTest, ReadDelayHalvesTheTimeToThreshold) {
  const int64_t interval = 250 * kMs;
  GrowthForecast still;
  EXPECT_EQ(still.NextReadDelayNs(kMiB, interval), interval) << "no growth: the interval";

  GrowthForecast forecast = GrowingAt100MiBPerS(11, 10);
  // 8 MiB at 100 MiB/s is 80 ms; the next read comes after half of it.
  EXPECT_NEAR(static_cast<double>(forecast.NextReadDelayNs(8 * kMiB, interval)), 40.0 * kMs,
              1.0 * kMs);
  EXPECT_EQ(forecast.NextReadDelayNs(0, interval), kMinReadDelayNs);
  EXPECT_EQ(forecast.NextReadDelayNs(100 * kMiB, interval), interval);
  EXPECT_EQ(forecast.NextReadDelayNs(kMiB, kMs), kMs) << "an interval under the floor wins";
}

TEST(EarlyReclaimTest, LeadsByTheGrowthOfTheLead) {
  const uint64_t soft = 128 * kMiB;
  const uint64_t goal = 120 * kMiB;
  // 20 ms at 100 MiB/s is 2 MiB.
  EXPECT_NEAR(static_cast<double>(EarlyReclaimBytes(soft, goal, kHundredMiBPerS, 20 * kMs)),
              126.0 * kMiB, 1024);
}

TEST(EarlyReclaimTest, LeadsAtMostHalfTheBand) {
  const uint64_t soft = 128 * kMiB;
  const uint64_t goal = 120 * kMiB;
  EXPECT_EQ(EarlyReclaimBytes(soft, goal, kHundredMiBPerS, 500 * kMs), 124 * kMiB);
}

TEST(EarlyReclaimTest, NoLeadWithoutGrowthOrSetting) {
  const uint64_t soft = 128 * kMiB;
  const uint64_t goal = 120 * kMiB;
  EXPECT_EQ(EarlyReclaimBytes(soft, goal, 0, 50 * kMs), soft);
  EXPECT_EQ(EarlyReclaimBytes(soft, goal, kHundredMiBPerS, 0), soft);
  EXPECT_EQ(EarlyReclaimBytes(soft, soft, kHundredMiBPerS, 50 * kMs), soft)
      << "hysteresis 0 leaves no band to lead into";
}

}  // namespace
}  // namespace memward::accounting
