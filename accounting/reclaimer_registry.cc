// The reclaimer table, the priority order, back-off and the CPU cap.
#include "accounting/reclaimer_registry.h"

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "accounting/decision_log.h"
#include "accounting/pressure_state.h"
#include "base/mutex_lock.h"

namespace memward::accounting {
namespace {

struct Entry {
  bool used = false;
  uint32_t id = 0;
  memward_reclaimer reclaimer = {};
  char name[64] = {};
  uint64_t calls = 0;
  uint64_t freed_bytes = 0;
  uint64_t empty_calls = 0;
  uint64_t budget_overruns = 0;
  int consecutive_empty = 0;
  int64_t backoff_until_ns = 0;
};

// Guarded by g_lock.
constinit pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
constinit Entry g_entries[kMaxReclaimers];
constinit uint32_t g_next_id = 1;
// The id of the reclaimer being called now (0 for none), so Unregister can
// wait for that call.
constinit std::atomic<uint32_t> g_calling{0};
// The thread that calls g_calling's reclaimer, so that Unregister called
// from inside that callback does not wait for itself.
constinit pthread_t g_calling_thread;

// The CPU-cap window. Touched only by the warden thread.
constinit int64_t g_window_start_ns = 0;
constinit int64_t g_window_cpu_ns = 0;
constexpr int64_t kWindowNs = 1000000000;

int64_t ThreadCpuNs() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

int64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}


// Copies the used entries sorted by priority (then by id, the order of
// registration) into `out`. Requires g_lock.
int SortedEntriesLocked(Entry* out) {
  int count = 0;
  for (const Entry& entry : g_entries) {
    if (!entry.used) continue;
    int position = count++;
    while (position > 0 && (out[position - 1].reclaimer.priority > entry.reclaimer.priority ||
                            (out[position - 1].reclaimer.priority == entry.reclaimer.priority &&
                             out[position - 1].id > entry.id))) {
      out[position] = out[position - 1];
      position--;
    }
    out[position] = entry;
  }
  return count;
}

Entry* FindLocked(uint32_t id) {
  for (Entry& entry : g_entries) {
    if (entry.used && entry.id == id) return &entry;
  }
  return nullptr;
}

// Starts the call of `id`, or returns false when it was unregistered since
// the pass copied the table.
bool BeginCall(uint32_t id) {
  base::MutexLock guard(&g_lock);
  if (FindLocked(id) == nullptr) return false;
  g_calling_thread = pthread_self();
  g_calling.store(id, std::memory_order_release);
  return true;
}

void EndCall() { g_calling.store(0, std::memory_order_release); }

// Records the outcome of one reclaim call: counts, back-off, the decision.
void FinishCall(const Entry& copy, uint64_t requested, uint64_t freed, int64_t elapsed_ns,
                int64_t now_ns) {
  Decision decision;
  decision.kind = DecisionKind::kReclaim;
  decision.level = CurrentPressureLevel();
  memcpy(decision.name, copy.name, sizeof(decision.name));
  decision.requested = requested;
  decision.value = static_cast<int64_t>(freed);
  decision.elapsed_us = elapsed_ns / 1000;
  RecordDecision(decision);

  int64_t backoff_ms = 0;
  {
    base::MutexLock guard(&g_lock);
    Entry* entry = FindLocked(copy.id);
    if (entry == nullptr) return;
    entry->calls++;
    entry->freed_bytes += freed;
    const uint32_t budget_us = entry->reclaimer.time_budget_us != 0
                                   ? entry->reclaimer.time_budget_us
                                   : kDefaultReclaimBudgetUs;
    if (elapsed_ns / 1000 > budget_us) entry->budget_overruns++;
    if (freed > 0) {
      entry->consecutive_empty = 0;
      entry->backoff_until_ns = 0;
      return;
    }
    entry->empty_calls++;
    const int doublings = entry->consecutive_empty < 20 ? entry->consecutive_empty : 20;
    entry->consecutive_empty++;
    backoff_ms = kBackoffBaseMs << doublings;
    if (backoff_ms > kBackoffMaxMs) backoff_ms = kBackoffMaxMs;
    entry->backoff_until_ns = now_ns + backoff_ms * 1000000;
  }
  Decision backoff;
  backoff.kind = DecisionKind::kBackoff;
  backoff.level = CurrentPressureLevel();
  memcpy(backoff.name, copy.name, sizeof(backoff.name));
  backoff.value = backoff_ms;
  RecordDecision(backoff);
}

}  // namespace

int RegisterReclaimer(const memward_reclaimer& reclaimer, uint32_t* id) {
  if (id == nullptr || reclaimer.name == nullptr || reclaimer.count == nullptr ||
      reclaimer.reclaim == nullptr) {
    return MEMWARD_ERROR_INVALID;
  }
  const size_t name_length = strnlen(reclaimer.name, 64);
  if (name_length == 0 || name_length > 63) return MEMWARD_ERROR_INVALID;
  base::MutexLock guard(&g_lock);
  for (Entry& entry : g_entries) {
    if (entry.used) continue;
    entry = Entry{};
    entry.used = true;
    entry.id = g_next_id++;
    entry.reclaimer = reclaimer;
    memcpy(entry.name, reclaimer.name, name_length);
    entry.reclaimer.name = nullptr;  // the caller's string may not outlive the call
    *id = entry.id;
    return MEMWARD_OK;
  }
  return MEMWARD_ERROR_FULL;
}

int UnregisterReclaimer(uint32_t id) {
  {
    base::MutexLock guard(&g_lock);
    Entry* entry = FindLocked(id);
    if (entry == nullptr) return MEMWARD_ERROR_NOT_FOUND;
    *entry = Entry{};
    // From inside its own callback: the call in progress is the caller.
    if (g_calling.load(std::memory_order_acquire) == id &&
        pthread_equal(pthread_self(), g_calling_thread)) {
      return MEMWARD_OK;
    }
  }
  // A call that began before the entry was cleared may still run.
  while (g_calling.load(std::memory_order_acquire) == id) usleep(100);
  return MEMWARD_OK;
}

ReclaimPassResult RunReclaimPass(uint64_t target_bytes, int64_t now_ns, int cpu_share_percent) {
  ReclaimPassResult result;
  if (target_bytes == 0) return result;
  if (now_ns - g_window_start_ns >= kWindowNs) {
    g_window_start_ns = now_ns;
    g_window_cpu_ns = 0;
  }
  const int64_t cpu_allowance_ns = kWindowNs / 100 * cpu_share_percent;
  if (g_window_cpu_ns >= cpu_allowance_ns) {
    result.cpu_capped = true;
    Decision decision;
    decision.kind = DecisionKind::kCpuCapped;
    decision.level = CurrentPressureLevel();
    decision.requested = target_bytes;
    decision.value = g_window_cpu_ns;
    RecordDecision(decision);
    return result;
  }

  Entry entries[kMaxReclaimers];
  int count = 0;
  {
    base::MutexLock guard(&g_lock);
    count = SortedEntriesLocked(entries);
  }
  for (int i = 0; i < count && result.freed_bytes < target_bytes; i++) {
    const Entry& entry = entries[i];
    if (entry.backoff_until_ns > now_ns) {
      result.backed_off++;
      continue;
    }
    if (g_window_cpu_ns >= cpu_allowance_ns) {
      result.cpu_capped = true;
      break;
    }
    if (!BeginCall(entry.id)) continue;
    const int64_t cpu_before = ThreadCpuNs();
    const int64_t wall_before = MonotonicNs();
    const memward_reclaimer& callbacks = entry.reclaimer;
    const uint64_t available = callbacks.count(callbacks.context);
    uint64_t freed = 0;
    uint64_t asked = 0;
    if (available > 0) {
      const uint64_t remaining = target_bytes - result.freed_bytes;
      asked = remaining < available ? remaining : available;
      freed = callbacks.reclaim(callbacks.context, asked);
    }
    EndCall();
    const int64_t elapsed_ns = MonotonicNs() - wall_before;
    g_window_cpu_ns += ThreadCpuNs() - cpu_before;
    // A reclaimer that has nothing to give is not asked and not backed off.
    if (available == 0) continue;
    result.asked++;
    result.freed_bytes += freed;
    FinishCall(entry, asked, freed, elapsed_ns, now_ns);
  }
  return result;
}

void ChargeReclaimCpu(int64_t cpu_ns) { g_window_cpu_ns += cpu_ns; }

uint64_t CountReclaimable() {
  Entry entries[kMaxReclaimers];
  int count = 0;
  {
    base::MutexLock guard(&g_lock);
    count = SortedEntriesLocked(entries);
  }
  uint64_t total = 0;
  for (int i = 0; i < count; i++) {
    if (!BeginCall(entries[i].id)) continue;
    total += entries[i].reclaimer.count(entries[i].reclaimer.context);
    EndCall();
  }
  return total;
}

int ListReclaimers(ReclaimerInfo* out, int capacity) {
  base::MutexLock guard(&g_lock);
  int count = 0;
  for (const Entry& entry : g_entries) {
    if (!entry.used) continue;
    if (count < capacity) {
      ReclaimerInfo& info = out[count];
      info.id = entry.id;
      memcpy(info.name, entry.name, sizeof(info.name));
      info.priority = entry.reclaimer.priority;
      info.calls = entry.calls;
      info.freed_bytes = entry.freed_bytes;
      info.empty_calls = entry.empty_calls;
      info.budget_overruns = entry.budget_overruns;
      info.backoff_until_ns = entry.backoff_until_ns;
    }
    count++;
  }
  return count;
}

}  // namespace memward::accounting
