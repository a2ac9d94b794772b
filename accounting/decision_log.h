// The warden's decisions under memory pressure: counters of each kind and a
// short ring of the latest, for GET /decisions and the metrics.
//
// Thread safety: one mutex guards the ring and the counters. RecordDecision
// copies a decision in and SnapshotDecisions copies the ring out under it.
// Neither allocates under the lock, and no allocation path takes it.
#ifndef MEMWARD_ACCOUNTING_DECISION_LOG_H_
#define MEMWARD_ACCOUNTING_DECISION_LOG_H_

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "accounting/pressure_state.h"

namespace memward::accounting {

enum class DecisionKind : uint8_t {
  kLevelChange,   // `level` is the new level, `value` the working set in bytes
  kReclaim,       // reclaimer `name` was called for `requested` and freed `value`
  kBackoff,       // reclaimer `name` freed nothing; next call in `value` ms
  kCpuCapped,     // reclaim skipped: `value` ns of reclaim CPU time this second
  kPurge,         // dirty pages purged: `value` bytes
  kDecay,         // dirty decay set to `value` ms (-1: the configured setting)
  kRejectSet,     // `value` tenants marked for rejection at the critical level
  kReadFailed,    // the memory reading failed
};
inline constexpr int kNumDecisionKinds = 8;

const char* DecisionKindName(DecisionKind kind);

struct Decision {
  int64_t time_ms = 0;  // CLOCK_REALTIME, milliseconds since the epoch
  DecisionKind kind = DecisionKind::kLevelChange;
  PressureLevel level = PressureLevel::kNormal;  // the level when it was taken
  char name[64] = {};                            // the reclaimer, where one acted
  uint64_t requested = 0;
  int64_t value = 0;
  int64_t elapsed_us = 0;  // time the action took
};

// The number of decisions the ring keeps.
inline constexpr size_t kDecisionHistory = 128;

// Stamps `decision` with the current time and appends it.
void RecordDecision(Decision decision);

struct DecisionCounts {
  uint64_t by_kind[kNumDecisionKinds] = {};
  uint64_t reclaimed_bytes = 0;
  uint64_t purged_bytes = 0;
};

DecisionCounts ReadDecisionCounts();

// Copies the ring, oldest first, into `out` (capacity kDecisionHistory) and
// returns how many were copied.
size_t SnapshotDecisions(Decision* out);

// Forgets every decision and count; for tests.
void ClearDecisionLog();

// Writes {"counts": {...}, "decisions": [...]} for GET /decisions. The
// counts include the admissions shed and rejected for pressure.
void WriteDecisionsJson(std::string* out);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_DECISION_LOG_H_
