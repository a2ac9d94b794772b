// Per-thread caches for the arenas memward creates.
//
// jemalloc 5.3's automatic thread cache ignores MALLOCX_ARENA: it hands out a
// cached object of any arena, and free() caches an object of any arena, so it
// cannot serve routed allocations. Two layers replace it for each (thread,
// arena slot) pair the thread uses:
//
//  - a SlotCache of memward's own: small LIFO bins of free objects per size
//    class up to kCachedMaxSize, filled from and drained to jemalloc in
//    batches. A routed malloc/free pair then costs a bin pop and push instead
//    of jemalloc's general mallocx/sallocx/dallocx path (about 490
//    instructions per 64-byte pair without it, measured with callgrind);
//  - an explicit jemalloc thread cache, used for the batches and for sizes
//    above kCachedMaxSize (not for request arenas, which are emptied at each
//    request end). jemalloc allows 4,094 explicit caches in all;
//    memward uses at most kMaxExplicitCaches and falls back to
//    MALLOCX_TCACHE_NONE (35-200 ns per pair on a 2-vCPU machine) beyond.
//
// Objects in a SlotCache are free: they belong to no tenant until a routed
// malloc in the same slot hands them out. jemalloc counts them as allocated,
// so memward_thread_flush empties them before statistics are compared.
//
// A thread keeps caches for at most kMaxCachesPerThread slots and empties and
// destroys the oldest to make room. A thread's caches are emptied and its
// batch published when it exits (pthread key destructor). In a forked child
// the batches of the threads that did not survive are published and their
// caches are left allocated (see ResetThreadListInChild).
#ifndef MEMWARD_ALLOC_THREAD_CACHE_H_
#define MEMWARD_ALLOC_THREAD_CACHE_H_

#include <stddef.h>
#include <stdint.h>

#include "alloc/arena_registry.h"
#include "alloc/macros.h"
#include "alloc/thread_state.h"

namespace memward::alloc {

inline constexpr uint32_t kMaxExplicitCaches = 1024;
// Bounds that keep a thread's block near 23 KiB: 4 slot caches of 40 bins of
// up to 16 objects. A bin holds at most kBinBytes of free objects (and at
// least 2), so a slot cache holds at most about 0.6 MiB.
inline constexpr uint32_t kMaxCachesPerThread = 4;
// 20 KiB rather than 16 KiB, so that a 16 KiB block in the shared arena (16
// KiB plus its owner header) is cached too.
inline constexpr size_t kCachedMaxSize = 20480;
// jemalloc 5.3 with 4 KiB pages has 38 size classes up to 20 KiB.
inline constexpr uint32_t kMaxCachedClasses = 40;
inline constexpr uint32_t kBinCapacity = 16;
inline constexpr size_t kBinBytes = 32768;
inline constexpr uint32_t kRefillCount = 4;

struct CacheBin {
  uint32_t count;
  void* objects[kBinCapacity];
};

// memward's cache for one (thread, arena slot). Used only by its thread.
struct SlotCache {
  uint32_t slot;        // 0 when unused
  uint16_t tcache;      // jemalloc's explicit cache index + 1, or 0 for none
  ArenaKind kind;       // the slot's kind, copied so scope entry need not read the slot
  int arena_flags;      // mallocx flags: the slot's arena and `tcache`
  CacheBin bins[kMaxCachedClasses];
};

// Size classes up to kCachedMaxSize, filled once from nallocx.
struct SizeClasses {
  uint8_t index_by_step[kCachedMaxSize / 8 + 1];  // by (size + 7) / 8
  uint32_t size_of[kMaxCachedClasses];
  uint32_t limit_of[kMaxCachedClasses];  // bin capacity: kBinBytes / size, 2 to 16
};
extern SizeClasses g_size_classes __attribute__((visibility("hidden")));

// A thread's caches, allocated on its first scope from memward's own arena.
struct ThreadBlock {
  // Index + 1 into `caches` for each arena slot, 0 for none. Written only by
  // the owning thread; read by a forked child's clean-up after it is gone.
  uint8_t cache_by_slot[kMaxArenaSlots];
  SlotCache caches[kMaxCachesPerThread];
  uint32_t oldest;  // the cache to evict next once all are in use
  // Guarded by the thread list lock.
  ThreadBlock* next;
  ThreadBlock* previous;
  // The owner's TLS state, so a forked child can publish the batch of a
  // thread that did not survive the fork.
  ThreadState* owner_state;
};

// The slow part of CacheForSlot: creates the thread's block and the cache (and
// jemalloc's explicit cache behind it) on first use.
SlotCache* CreateCacheForSlot(uint32_t slot);

// Returns the calling thread's cache for `slot`, creating it on first use;
// nullptr if memory for the thread's block is not available. Called at scope
// entry, outside malloc.
MEMWARD_ALWAYS_INLINE SlotCache* CacheForSlot(uint32_t slot) {
  ThreadBlock* block = t_thread_state.block;
  if (MEMWARD_LIKELY(block != nullptr)) {
    uint8_t entry = block->cache_by_slot[slot];
    if (MEMWARD_LIKELY(entry != 0)) return &block->caches[entry - 1];
  }
  return CreateCacheForSlot(slot);
}

// Returns the mallocx flags that free an object of `slot` on the calling
// thread: its explicit cache for that slot if any, MALLOCX_TCACHE_NONE else.
int FreeFlagsForSlot(uint32_t slot);

// Takes an object of class `size_class` from jemalloc for `cache`, keeping a
// batch in the bin. Returns nullptr when jemalloc is out of memory, and a
// block of another arena (with the bin untouched) when jemalloc no longer
// honours the arena flag on this thread.
void* RefillAndTake(SlotCache* cache, uint32_t size_class);

// Returns half of a full bin to jemalloc, then stores `block`.
void SpillAndPut(SlotCache* cache, uint32_t size_class, void* block);

// Empties the calling thread's caches for `slot` back to the arena.
void FlushCacheForSlot(uint32_t slot);

// Empties every cache of the calling thread back to its arena.
void FlushOwnCaches();

// Returns memward's own memory for caches: the number of explicit jemalloc
// caches it created, and their bytes as jemalloc counted the first one. The
// bytes are an estimate, because another thread's internal allocation at the
// moment of that first measurement would be counted too.
uint32_t ExplicitCacheCount();
size_t ExplicitCacheBytes();

// Fork handlers for the thread list (lock order: after g_arena_lock).
void LockThreadListForFork();
void UnlockThreadListInParent();
void ResetThreadListInChild();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_THREAD_CACHE_H_
