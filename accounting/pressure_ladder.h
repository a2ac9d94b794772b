// The pressure ladder: from a reading of the container's memory to a level
// (normal, soft, high, critical) and the actions that level requires.
//
// The ladder is pure: Evaluate takes a reading and returns a step, and the
// caller (accounting/pressure_service.cc, on the warden thread) carries the
// step out. So tests feed readings directly.
//
// Levels come from the working set in percent of the limit: a level is
// entered when the working set reaches its threshold, and left only when the
// working set falls `hysteresis_percent` points below that threshold, so a
// reading that hovers at a threshold does not flip the level at every tick.
// Pressure stall information raises the level too: memory.pressure's "some"
// average over 10 s at kPsiSomeSoftPercent or more makes it at least soft,
// and the "full" average at kPsiFullHighPercent or more at least high.
#ifndef MEMWARD_ACCOUNTING_PRESSURE_LADDER_H_
#define MEMWARD_ACCOUNTING_PRESSURE_LADDER_H_

#include <stdint.h>

#include "accounting/pressure_state.h"

namespace memward::base {
class Settings;
}

namespace memward::accounting {

// PSI thresholds, in percent of wall time over the last 10 s. "some" at 10 %
// means a task waited on memory a tenth of the time: reclaim in the kernel
// has started to cost, so memward starts giving memory back. "full" at 20 %
// means every task stalled a fifth of the time.
inline constexpr double kPsiSomeSoftPercent = 10.0;
inline constexpr double kPsiFullHighPercent = 20.0;

// One reading of the memory the ladder watches.
struct PressureInput {
  bool ok = false;                 // false: no limit or usage could be read
  uint64_t limit_bytes = 0;        // the effective limit; 0 for none
  uint64_t working_set_bytes = 0;  // usage minus inactive file pages
  uint64_t usage_bytes = 0;        // 0 when the source reads no usage
  double psi_some_avg10 = -1;      // percent; negative when unavailable
  double psi_full_avg10 = -1;
};

struct LadderThresholds {
  int soft_percent = 80;
  int high_percent = 90;
  int critical_percent = 95;
  int hysteresis_percent = 5;

  // Returns whether 0 < soft < high < critical <= 100 and the hysteresis is
  // smaller than the soft threshold.
  bool Valid() const;
};

// Reads the thresholds from the settings. When they are not in ascending
// order, reports that once on stderr (keys, values, the rule) and returns
// the defaults.
LadderThresholds ThresholdsFromSettings(const base::Settings& settings);

// The change to the decay time of dirty pages after a step.
enum class DecayChange : uint8_t { kNone, kShorten, kRestore };

// The result of one evaluation.
struct LadderStep {
  PressureLevel previous = PressureLevel::kNormal;
  PressureLevel level = PressureLevel::kNormal;
  bool rose = false;
  bool fell = false;
  // Bytes to ask the reclaimers for: the working set above the point where
  // the level falls back to normal. 0 at the normal level.
  uint64_t reclaim_target_bytes = 0;
  // Purge dirty pages: set on each rise.
  bool purge = false;
  DecayChange decay = DecayChange::kNone;
  // The working set in percent of the limit, rounded down; 0 without a limit.
  int usage_percent = 0;
};

class PressureLadder {
 public:
  constexpr explicit PressureLadder(const LadderThresholds& thresholds = {})
      : thresholds_(thresholds) {}

  // Computes the level for `input`, moves to it and returns the step.
  LadderStep Evaluate(const PressureInput& input);

  PressureLevel level() const { return level_; }
  const LadderThresholds& thresholds() const { return thresholds_; }

  // The working set at which `level` is entered, for a limit of
  // `limit_bytes`; 0 for the normal level.
  uint64_t EntryBytes(PressureLevel level, uint64_t limit_bytes) const;
  // The working set below which `level` is left.
  uint64_t ExitBytes(PressureLevel level, uint64_t limit_bytes) const;

 private:
  int EntryPercent(PressureLevel level) const;
  PressureLevel LevelFromUsage(const PressureInput& input) const;

  LadderThresholds thresholds_;
  PressureLevel level_ = PressureLevel::kNormal;
};

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PRESSURE_LADDER_H_
