// The arenas memward creates, each in a numbered slot.
//
// Kinds: one arena for memward's own bookkeeping; dedicated arenas for
// tenants registered with one (bounded by the `dedicated_arenas` setting);
// one shared arena for every other tenant, whose allocations carry a 16-byte
// owner header (alloc/shared_header.h) because the arena alone cannot name
// the owner; and request arenas, taken from a pool for one open request at a
// time and recycled, never created per request.
//
// Costs that shape this, measured on Debian's jemalloc 5.3.0: creating an
// arena takes about 50 us, ~120 KiB resident and 2 MiB of address space, and
// jemalloc allows 4,095 arenas in all, so arenas are bounded and reused.
//
// Lock order (outermost first): the tenant registry lock (api/registry.cc),
// then g_arena_lock here, then the thread list lock (alloc/thread_cache.cc),
// then jemalloc's own locks (taken inside mallctl). No path takes an earlier
// lock while holding a later one, and nothing inside malloc takes any of them.
#ifndef MEMWARD_ALLOC_ARENA_REGISTRY_H_
#define MEMWARD_ALLOC_ARENA_REGISTRY_H_

#include <stdint.h>

#include <atomic>

#include "accounting/tenant.h"

namespace memward::alloc {

// kSampled: the sampler's arena, which serves every sampled allocation so
// that free finds sampled blocks through the owner map (alloc/sampling.h).
enum class ArenaKind : uint8_t { kUnused = 0, kMemward, kDedicated, kShared, kRequest, kSampled };

// Request arena states; kIdle arenas wait in the pool.
enum class RequestState : uint8_t { kIdle = 0, kOpen, kDraining };

inline constexpr uint32_t kMaxArenaSlots = 1024;

struct ArenaSlot {
  // Set once when the slot is created, under g_arena_lock; read-only after.
  unsigned arena_index = 0;
  ArenaKind kind = ArenaKind::kUnused;
  int arena_flag = 0;  // MALLOCX_ARENA(arena_index)

  // The owner of every byte in this arena (dedicated and request arenas).
  // For a request arena it changes only while the arena is empty and idle.
  std::atomic<accounting::TenantId> tenant{0};

  // Request arenas: the open request's counters and state. `generation`
  // grows at each request begin so stale request handles are detected.
  std::atomic<uint32_t> generation{0};
  std::atomic<RequestState> state{RequestState::kIdle};
  // Threads whose current scope is this open request (alloc/scope.cc).
  std::atomic<uint32_t> inside{0};
  accounting::TenantCounters request;
};

extern ArenaSlot g_slots[kMaxArenaSlots] __attribute__((visibility("hidden")));

// Returns slot `slot` (< kMaxArenaSlots).
inline ArenaSlot& SlotAt(uint32_t slot) { return g_slots[slot]; }

// The slot of memward's own arena, creating it on first use; 0 if jemalloc
// refused to create an arena. Called outside malloc.
uint32_t MemwardArenaSlot();

// The slot of the sampler's arena, creating it on first use; 0 if jemalloc
// refused to create an arena. Called outside malloc.
uint32_t SampledArenaSlot();

// Creates a dedicated arena for `tenant` if the budget allows; returns its
// slot, or 0 when the budget is spent or creation failed.
uint32_t CreateDedicatedArena(accounting::TenantId tenant);

// The slot of the shared arena, creating it on first use; 0 on failure.
uint32_t SharedArenaSlot();

// Takes an idle request arena from the pool (recycling drained ones, creating
// one while under the `request_arenas` bound) and opens it for `tenant`.
// Returns 0 when every request arena is open or draining.
uint32_t AcquireRequestArena(accounting::TenantId tenant, uint32_t* generation);

// Closes an open request arena. If it contains no live bytes, its pages are purged
// and it returns to the pool; otherwise it drains until its last byte is freed.
void ReleaseRequestArena(uint32_t slot);

// Purges the unused pages of one arena.
void PurgeArena(uint32_t slot);

// Locks every registry lock in order for fork, and releases them after.
void LockArenasForFork();
void UnlockArenasAfterFork();

// Returns the resident bytes of the slot table.
size_t SlotTableResidentBytes();

// Number of request arenas by state, for statistics.
struct RequestPoolCounts {
  uint32_t idle = 0, open = 0, draining = 0;
};
RequestPoolCounts CountRequestArenas();

// One open request, as GET /requests shows it.
struct OpenRequestInfo {
  uint32_t slot = 0;
  uint32_t generation = 0;
  accounting::TenantId tenant = 0;
  int64_t live_bytes = 0;
  int64_t peak_bytes = 0;
  uint64_t allocated_bytes = 0;
  uint64_t allocations = 0;
};

// Copies up to `capacity` open requests into `out` under g_arena_lock and
// returns how many there are in all. Counts of threads still inside a
// request may be unpublished (up to a batch, about 1 MiB, per thread).
uint32_t ListOpenRequests(OpenRequestInfo* out, uint32_t capacity);

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_ARENA_REGISTRY_H_
