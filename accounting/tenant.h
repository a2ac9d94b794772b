// Tenants: who owns memory. A tenant is registered by name and gets a small
// integer id that indexes a fixed-capacity table, so the allocation paths
// find a tenant with one array read.
//
// Ids: 0 is the process (untagged memory, served by jemalloc's automatic
// arenas and measured from their statistics); 1 is memward itself (its own
// bookkeeping, from its own arena); programs' tenants start at 2.
//
// Counting: the allocation paths add to per-thread batches (ThreadBatch in
// alloc/thread_state.h) and publish them here with atomic adds once a batch
// passes kBatchBytes or kBatchOperations, or when the thread changes scope.
// So a tenant's published live bytes lag the truth by at most kBatchBytes
// (plus one allocation) for each thread with an unpublished batch for it;
// memward_thread_flush publishes the caller's batch at once.
#ifndef MEMWARD_ACCOUNTING_TENANT_H_
#define MEMWARD_ACCOUNTING_TENANT_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

namespace memward::accounting {

using TenantId = uint32_t;

inline constexpr TenantId kProcessTenant = 0;
inline constexpr TenantId kMemwardTenant = 1;
inline constexpr TenantId kFirstUserTenant = 2;
inline constexpr TenantId kMaxTenants = 4096;
inline constexpr size_t kMaxTenantName = 63;

inline constexpr int64_t kBatchBytes = 1 << 20;
inline constexpr int32_t kBatchOperations = 4096;

// Admission results, in order of severity.
enum class Admission : uint8_t { kAdmit = 0, kShed = 1, kReject = 2 };
enum class AdmissionReason : uint8_t { kNone = 0, kSoftLimit = 1, kHardLimit = 2, kPressure = 3 };

// One tenant's shared counters. Each field is updated with relaxed atomics:
// readers see each number exactly, but not a snapshot of all of them.
struct alignas(64) TenantCounters {
  std::atomic<int64_t> live_bytes{0};
  std::atomic<int64_t> peak_bytes{0};
  std::atomic<uint64_t> allocated_bytes{0};
  std::atomic<uint64_t> freed_bytes{0};
  std::atomic<uint64_t> allocations{0};
  std::atomic<uint64_t> frees{0};
  std::atomic<uint64_t> refused_allocations{0};
  std::atomic<uint64_t> admissions[3] = {};
};

// A net change to one tenant's counters, as batched by a thread.
// The freed bytes are allocated_bytes - live, so a free updates two fields;
// `peak_live` is the highest `live` reached during the batch, so the
// published peak is exact when one thread drives the counters.
struct TenantDelta {
  int64_t allocated_bytes = 0;
  int64_t live = 0;
  int64_t peak_live = 0;
  int32_t allocations = 0;
  int32_t frees = 0;

  bool Empty() const { return allocations == 0 && frees == 0; }
  int64_t LiveBytes() const { return live; }
  int64_t FreedBytes() const { return allocated_bytes - live; }

  void AddAllocation(int64_t bytes) {
    allocated_bytes += bytes;
    allocations++;
    live += bytes;
    if (live > peak_live) peak_live = live;
  }
  void AddFree(int64_t bytes) {
    frees++;
    live -= bytes;
  }
};

struct Tenant {
  // Written under the registry lock before `registered` is set (release);
  // read-only afterwards, except the limits.
  char name[kMaxTenantName + 1] = {};
  std::atomic<bool> registered{false};
  bool dedicated_arena = false;
  // The arena slot (alloc/arena_registry.h) that serves this tenant's scoped
  // allocations; 0 until the tenant's first scope.
  std::atomic<uint32_t> arena_slot{0};

  // Limits in bytes, 0 for none; changed at run time with relaxed stores.
  std::atomic<uint64_t> soft_limit{0};
  std::atomic<uint64_t> hard_limit{0};
  std::atomic<bool> enforce_hard_limit{false};

  TenantCounters counters;
};

extern Tenant g_tenants[kMaxTenants] __attribute__((visibility("hidden")));

// Returns the table entry for `id` (< kMaxTenants).
inline Tenant& TenantAt(TenantId id) { return g_tenants[id]; }

// Returns the resident bytes of the tenant table.
size_t TenantTableResidentBytes();

// Adds a thread's batch to shared counters (a tenant's or a request's) and
// raises their peak.
void PublishDelta(TenantCounters& counters, const TenantDelta& delta);

// Returns the tenant's admission result for `expected_bytes` more and counts
// it. `extra_live` is the caller's unpublished live bytes for the tenant.
// Under memory pressure (accounting/pressure_state.h) a tenant over its
// share is shed at the high level, and a tenant the warden marked as
// furthest over its share is rejected at the critical level.
Admission Admit(TenantId id, uint64_t expected_bytes, int64_t extra_live,
                AdmissionReason* reason);

// Returns whether allocating `bytes` more would pass the tenant's hard limit
// where the tenant asked for enforcement on allocation.
inline bool WouldPassHardLimit(const Tenant& tenant, int64_t unpublished_live, size_t bytes) {
  if (!tenant.enforce_hard_limit.load(std::memory_order_relaxed)) return false;
  uint64_t limit = tenant.hard_limit.load(std::memory_order_relaxed);
  if (limit == 0) return false;
  int64_t live = tenant.counters.live_bytes.load(std::memory_order_relaxed) + unpublished_live;
  // Unsigned and saturating: limits above INT64_MAX and huge sizes compare
  // as the numbers they are.
  uint64_t projected = live > 0 ? static_cast<uint64_t>(live) : 0;
  if (__builtin_add_overflow(projected, bytes, &projected)) return true;
  return projected > limit;
}

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_TENANT_H_
