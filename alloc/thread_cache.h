// Explicit jemalloc thread caches, one per (thread, memward arena) in use.
//
// jemalloc 5.3's automatic thread cache ignores MALLOCX_ARENA: it hands out a
// cached object of any arena, and free() caches an object of any arena. So
// routed allocations use an explicit cache per (thread, arena slot), created
// on the thread's first use of the slot, and an object of a memward arena is
// only ever freed into the cache that belongs to its own arena (or with
// MALLOCX_TCACHE_NONE). jemalloc allows 4,094 explicit caches in all; memward
// uses at most kMaxExplicitCaches and falls back to MALLOCX_TCACHE_NONE,
// which costs 35-200 ns per malloc/free pair (measured on a 2-vCPU machine),
// for pairs beyond that. A thread keeps at most kMaxCachesPerThread caches.
//
// A thread's caches are destroyed and its batch published when it exits
// (pthread key destructor) and, in a forked child, for every thread that did
// not survive the fork.
#ifndef MEMWARD_ALLOC_THREAD_CACHE_H_
#define MEMWARD_ALLOC_THREAD_CACHE_H_

#include <stdint.h>

#include "alloc/arena_registry.h"

namespace memward::alloc {

inline constexpr uint32_t kMaxExplicitCaches = 1024;
// Each explicit cache holds about 30 KiB of jemalloc metadata, so a thread
// keeps caches for at most this many arenas and destroys (flushing it) the
// oldest one to make room.
inline constexpr uint32_t kMaxCachesPerThread = 8;

struct ThreadBlock {
  // tcache index + 1 for each arena slot, 0 for none yet, UINT16_MAX when the
  // pool of explicit caches was spent. Written only by the owning thread; read
  // by a forked child's clean-up after the owner is gone.
  uint16_t cache_by_slot[kMaxArenaSlots];
  // The slots that have a cache, in order of creation; `oldest` is the next
  // to evict once all kMaxCachesPerThread are in use.
  uint16_t cached_slots[kMaxCachesPerThread];
  uint32_t cache_count;
  uint32_t oldest;
  // Guarded by the thread list lock.
  ThreadBlock* next;
  ThreadBlock* previous;
  // The owner's TLS state, so a forked child can publish the batch of a
  // thread that did not survive the fork.
  struct ThreadState* owner_state;
};

// Returns the mallocx flags to allocate from `slot` with the calling thread's
// cache for it, creating the cache (and the thread's block) on first use.
// Called outside malloc (at scope entry).
int ArenaFlagsForSlot(uint32_t slot);

// Returns the flags to free an object of `slot` on the calling thread: its
// cache for that slot if it has one, MALLOCX_TCACHE_NONE otherwise.
int FreeFlagsForSlot(uint32_t slot);

// Flushes the calling thread's cache for `slot` back to the arena.
void FlushCacheForSlot(uint32_t slot);

// Flushes every explicit cache of the calling thread back to its arena, so
// that jemalloc's statistics of memward's arenas stop counting its objects.
void FlushOwnExplicitCaches();

// Fork handlers for the thread list (lock order: after g_arena_lock).
void LockThreadListForFork();
void UnlockThreadListInParent();
void ResetThreadListInChild();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_THREAD_CACHE_H_
