// Levels, hysteresis and the actions of each step of the pressure ladder.
#include "accounting/pressure_ladder.h"

#include "base/log.h"
#include "base/settings.h"

namespace memward::accounting {
namespace {

// Returns `percent` % of `bytes` without overflow for limits up to 2^64.
uint64_t PercentOf(uint64_t bytes, int percent) {
  if (percent <= 0) return 0;
  return bytes / 100 * static_cast<uint64_t>(percent) +
         bytes % 100 * static_cast<uint64_t>(percent) / 100;
}

PressureLevel Higher(PressureLevel a, PressureLevel b) { return a > b ? a : b; }

PressureLevel LevelFromPsi(const PressureInput& input) {
  if (input.psi_full_avg10 >= kPsiFullHighPercent) return PressureLevel::kHigh;
  if (input.psi_some_avg10 >= kPsiSomeSoftPercent) return PressureLevel::kSoft;
  return PressureLevel::kNormal;
}

}  // namespace

bool LadderThresholds::Valid() const {
  return base::PressureThresholdsAscend(soft_percent, high_percent, critical_percent,
                                        hysteresis_percent);
}

LadderThresholds ThresholdsFromSettings(const base::Settings& settings) {
  using base::SettingId;
  char message[base::kMaxLogMessage];
  if (!base::CheckPressureThresholds(settings, message, sizeof(message))) {
    static base::LogLimit log_limit(1);
    if (log_limit.Allow()) base::Log("%s", message);
    return LadderThresholds{};
  }
  LadderThresholds thresholds;
  thresholds.soft_percent = static_cast<int>(settings.Get(SettingId::kPressureSoft));
  thresholds.high_percent = static_cast<int>(settings.Get(SettingId::kPressureHigh));
  thresholds.critical_percent = static_cast<int>(settings.Get(SettingId::kPressureCritical));
  thresholds.hysteresis_percent = static_cast<int>(settings.Get(SettingId::kPressureHysteresis));
  return thresholds;
}

int PressureLadder::EntryPercent(PressureLevel level) const {
  switch (level) {
    case PressureLevel::kNormal: return 0;
    case PressureLevel::kSoft: return thresholds_.soft_percent;
    case PressureLevel::kHigh: return thresholds_.high_percent;
    case PressureLevel::kCritical: return thresholds_.critical_percent;
  }
  return 0;
}

uint64_t PressureLadder::EntryBytes(PressureLevel level, uint64_t limit_bytes) const {
  return PercentOf(limit_bytes, EntryPercent(level));
}

uint64_t PressureLadder::ExitBytes(PressureLevel level, uint64_t limit_bytes) const {
  if (level == PressureLevel::kNormal) return 0;
  return PercentOf(limit_bytes, EntryPercent(level) - thresholds_.hysteresis_percent);
}

// Returns the highest level whose entry threshold the working set reaches,
// or, below the current level, whose exit threshold it has not fallen under.
PressureLevel PressureLadder::LevelFromUsage(const PressureInput& input) const {
  const uint64_t used = input.working_set_bytes;
  const uint64_t limit = input.limit_bytes;
  for (int candidate = kNumPressureLevels - 1; candidate > 0; candidate--) {
    const auto level = static_cast<PressureLevel>(candidate);
    const uint64_t threshold = level <= level_ ? ExitBytes(level, limit) : EntryBytes(level, limit);
    if (used >= threshold) return level;
  }
  return PressureLevel::kNormal;
}

LadderStep PressureLadder::Evaluate(const PressureInput& input) {
  LadderStep step;
  step.previous = level_;
  const bool readable = input.ok && input.limit_bytes != 0;
  PressureLevel next = readable ? LevelFromUsage(input) : PressureLevel::kNormal;
  next = Higher(next, LevelFromPsi(input));
  if (readable) {
    step.usage_percent = static_cast<int>(static_cast<double>(input.working_set_bytes) * 100.0 /
                                          static_cast<double>(input.limit_bytes));
  }

  step.level = next;
  step.rose = next > level_;
  step.fell = next < level_;
  step.purge = step.rose;
  if (step.rose) step.decay = DecayChange::kShorten;
  if (step.fell) {
    step.decay = next == PressureLevel::kNormal ? DecayChange::kRestore : DecayChange::kShorten;
  }
  if (next != PressureLevel::kNormal && readable) {
    const uint64_t goal = ExitBytes(PressureLevel::kSoft, input.limit_bytes);
    if (input.working_set_bytes > goal) step.reclaim_target_bytes = input.working_set_bytes - goal;
  }
  level_ = next;
  return step;
}

}  // namespace memward::accounting
