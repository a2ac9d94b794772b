// The registered reclaimers (caches and pools that give memory back) and the
// reclaim pass that calls them, in priority order, for a number of bytes.
//
// Death-spiral guards: a reclaimer whose reclaim call frees nothing is
// backed off (no call for kBackoffBaseMs, doubling at each further empty
// call up to kBackoffMaxMs), and reclaim passes stop for the rest of a
// one-second window once the CPU time spent in reclaimers during it reaches
// `reclaim_cpu_share` percent of the window.
//
// Thread safety: g_lock (reclaimer_registry.cc) guards the table and is
// never held during a callback. Reclaim passes run on the warden thread
// only, so no reclaimer is called twice at once; Unregister waits for a call
// of that reclaimer in progress, unless it is called from that call.
#ifndef MEMWARD_ACCOUNTING_RECLAIMER_REGISTRY_H_
#define MEMWARD_ACCOUNTING_RECLAIMER_REGISTRY_H_

#include <stdint.h>

#include "memward/memward.h"

namespace memward::accounting {

inline constexpr int kMaxReclaimers = 64;
inline constexpr int64_t kBackoffBaseMs = 250;
inline constexpr int64_t kBackoffMaxMs = 60 * 1000;
// The time_budget_us used when a reclaimer sets 0.
inline constexpr uint32_t kDefaultReclaimBudgetUs = 10 * 1000;

// Returns MEMWARD_OK, MEMWARD_ERROR_INVALID (null callbacks, a name that is
// missing or longer than 63 bytes) or MEMWARD_ERROR_FULL.
int RegisterReclaimer(const memward_reclaimer& reclaimer, uint32_t* id);
// Returns MEMWARD_ERROR_NOT_FOUND for an id that is not registered.
int UnregisterReclaimer(uint32_t id);

struct ReclaimPassResult {
  uint64_t freed_bytes = 0;
  int asked = 0;          // reclaimers whose reclaim was called
  int backed_off = 0;     // reclaimers skipped because they are backed off
  bool cpu_capped = false;  // the pass was skipped for the CPU cap
};

// Asks the reclaimers, lowest priority value first, for `target_bytes`
// until that much is freed. Call on the warden thread. `now_ns` is
// CLOCK_MONOTONIC; `cpu_share_percent` is the reclaim_cpu_share setting.
ReclaimPassResult RunReclaimPass(uint64_t target_bytes, int64_t now_ns, int cpu_share_percent);

// Adds `cpu_ns` of other reclaim work (the purge after a pass) to the
// current CPU-cap window. Call on the warden thread.
void ChargeReclaimCpu(int64_t cpu_ns);

// Sums the reclaimers' count(): bytes they could free now. Call on the
// warden thread.
uint64_t CountReclaimable();

struct ReclaimerInfo {
  uint32_t id;
  char name[64];
  int priority;
  uint64_t calls;
  uint64_t freed_bytes;
  uint64_t empty_calls;     // calls that freed nothing
  uint64_t budget_overruns; // calls that took longer than the time budget
  int64_t backoff_until_ns; // CLOCK_MONOTONIC; 0 when not backed off
};

// Copies up to `capacity` entries and returns the number of reclaimers.
int ListReclaimers(ReclaimerInfo* out, int capacity);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_RECLAIMER_REGISTRY_H_
