// The pressure ladder fed readings directly: levels, hysteresis, reclaim
// targets, purge and decay steps, PSI and invalid thresholds.
#include "accounting/pressure_ladder.h"

#include <gtest/gtest.h>

#include "base/settings.h"

namespace memward::accounting {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kLimit = 1000 * kMiB;

PressureInput Reading(uint64_t working_set_mib) {
  PressureInput input;
  input.ok = true;
  input.limit_bytes = kLimit;
  input.working_set_bytes = working_set_mib * kMiB;
  return input;
}

// With the default thresholds (80/90/95, hysteresis 5), the working set at
// which the level falls back to normal is 75 % of the limit.
uint64_t TargetFor(uint64_t working_set_mib) { return (working_set_mib - 750) * kMiB; }

TEST(PressureLadderTest, RisesStepByStep) {
  PressureLadder ladder;
  struct Case {
    uint64_t working_set_mib;
    PressureLevel level;
    bool rose;
  };
  const Case cases[] = {
      {500, PressureLevel::kNormal, false},   {799, PressureLevel::kNormal, false},
      {800, PressureLevel::kSoft, true},      {850, PressureLevel::kSoft, false},
      {900, PressureLevel::kHigh, true},      {949, PressureLevel::kHigh, false},
      {950, PressureLevel::kCritical, true},  {990, PressureLevel::kCritical, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "working set " << c.working_set_mib << " MiB");
    const LadderStep step = ladder.Evaluate(Reading(c.working_set_mib));
    EXPECT_EQ(step.level, c.level);
    EXPECT_EQ(step.rose, c.rose);
    EXPECT_EQ(step.purge, c.rose);
    EXPECT_FALSE(step.fell);
    const uint64_t expected_target =
        c.level == PressureLevel::kNormal ? 0 : TargetFor(c.working_set_mib);
    EXPECT_EQ(step.reclaim_target_bytes, expected_target);
    if (c.rose) {
      EXPECT_EQ(step.decay, DecayChange::kShorten);
    }
  }
}

TEST(PressureLadderTest, FallsOnlyPastHysteresis) {
  PressureLadder ladder;
  ASSERT_EQ(ladder.Evaluate(Reading(990)).level, PressureLevel::kCritical);
  struct Case {
    uint64_t working_set_mib;
    PressureLevel level;
    bool fell;
  };
  const Case cases[] = {
      {940, PressureLevel::kCritical, false},  // under 95 % but not under 90 %
      {900, PressureLevel::kCritical, false},
      {899, PressureLevel::kHigh, true},
      {860, PressureLevel::kHigh, false},
      {849, PressureLevel::kSoft, true},
      {760, PressureLevel::kSoft, false},
      {749, PressureLevel::kNormal, true},
      {790, PressureLevel::kNormal, false},  // below the soft entry again
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "working set " << c.working_set_mib << " MiB");
    const LadderStep step = ladder.Evaluate(Reading(c.working_set_mib));
    EXPECT_EQ(step.level, c.level);
    EXPECT_EQ(step.fell, c.fell);
    EXPECT_FALSE(step.rose);
    EXPECT_FALSE(step.purge);
  }
}

TEST(PressureLadderTest, DecayShortensAndRestores) {
  PressureLadder ladder;
  EXPECT_EQ(ladder.Evaluate(Reading(910)).decay, DecayChange::kShorten);
  EXPECT_EQ(ladder.Evaluate(Reading(905)).decay, DecayChange::kNone);
  EXPECT_EQ(ladder.Evaluate(Reading(800)).decay, DecayChange::kShorten);  // high to soft
  EXPECT_EQ(ladder.Evaluate(Reading(100)).decay, DecayChange::kRestore);
}

TEST(PressureLadderTest, JumpsStraightToCritical) {
  PressureLadder ladder;
  const LadderStep step = ladder.Evaluate(Reading(999));
  EXPECT_EQ(step.previous, PressureLevel::kNormal);
  EXPECT_EQ(step.level, PressureLevel::kCritical);
  EXPECT_TRUE(step.purge);
  EXPECT_EQ(step.usage_percent, 99);
}

TEST(PressureLadderTest, UnreadableInputIsNormal) {
  PressureLadder ladder;
  ASSERT_EQ(ladder.Evaluate(Reading(990)).level, PressureLevel::kCritical);
  const LadderStep step = ladder.Evaluate(PressureInput{});
  EXPECT_EQ(step.level, PressureLevel::kNormal);
  EXPECT_TRUE(step.fell);
  EXPECT_EQ(step.reclaim_target_bytes, 0u);

  PressureInput no_limit = Reading(10);
  no_limit.limit_bytes = 0;
  EXPECT_EQ(ladder.Evaluate(no_limit).level, PressureLevel::kNormal);
}

TEST(PressureLadderTest, PsiRaisesLevel) {
  PressureLadder ladder;
  PressureInput input = Reading(100);
  input.psi_some_avg10 = kPsiSomeSoftPercent;
  input.psi_full_avg10 = 0;
  EXPECT_EQ(ladder.Evaluate(input).level, PressureLevel::kSoft);
  input.psi_full_avg10 = kPsiFullHighPercent;
  const LadderStep high = ladder.Evaluate(input);
  EXPECT_EQ(high.level, PressureLevel::kHigh);
  // The working set is far below the goal, so there is nothing to ask for.
  EXPECT_EQ(high.reclaim_target_bytes, 0u);
  input.psi_some_avg10 = 1;
  input.psi_full_avg10 = 0;
  EXPECT_EQ(ladder.Evaluate(input).level, PressureLevel::kNormal);
}

TEST(PressureLadderTest, CustomThresholds) {
  LadderThresholds thresholds{50, 60, 70, 10};
  ASSERT_TRUE(thresholds.Valid());
  PressureLadder ladder(thresholds);
  EXPECT_EQ(ladder.EntryBytes(PressureLevel::kHigh, kLimit), 600 * kMiB);
  EXPECT_EQ(ladder.ExitBytes(PressureLevel::kHigh, kLimit), 500 * kMiB);
  const LadderStep step = ladder.Evaluate(Reading(650));
  EXPECT_EQ(step.level, PressureLevel::kHigh);
  EXPECT_EQ(step.reclaim_target_bytes, 250 * kMiB);  // down to 40 %
}

TEST(PressureLadderTest, HugeLimitDoesNotOverflow) {
  PressureLadder ladder;
  EXPECT_EQ(ladder.EntryBytes(PressureLevel::kCritical, UINT64_MAX),
            UINT64_MAX / 100 * 95 + UINT64_MAX % 100 * 95 / 100);
}

TEST(PressureLadderTest, InvalidThresholdsFallBack) {
  EXPECT_FALSE((LadderThresholds{90, 80, 95, 5}.Valid()));
  EXPECT_FALSE((LadderThresholds{80, 90, 90, 5}.Valid()));
  EXPECT_FALSE((LadderThresholds{10, 90, 95, 10}.Valid()));
  base::Settings settings;
  settings.Set(base::SettingId::kPressureSoft, 95);
  settings.Set(base::SettingId::kPressureHigh, 90);
  const LadderThresholds thresholds = ThresholdsFromSettings(settings);
  EXPECT_EQ(thresholds.soft_percent, 80);
  EXPECT_EQ(thresholds.high_percent, 90);
  EXPECT_EQ(thresholds.critical_percent, 95);
  EXPECT_EQ(thresholds.hysteresis_percent, 5);
}

}  // namespace
}  // namespace memward::accounting
