// Per-thread slot caches, the list of thread blocks, and their clean-up.
#include "alloc/thread_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <atomic>

#include "accounting/owner_map.h"
#include "alloc/allocator.h"
#include "alloc/engine.h"
#include "alloc/page_tags.h"
#include "alloc/purge.h"
#include "alloc/routing.h"
#include "alloc/thread_state.h"
#include "base/log.h"

namespace memward::alloc {

constinit SizeClasses g_size_classes = {};

namespace {

// Guards the list of thread blocks. Lock order: after g_arena_lock.
constinit pthread_mutex_t g_thread_list_lock = PTHREAD_MUTEX_INITIALIZER;
constinit ThreadBlock* g_thread_list = nullptr;
constinit std::atomic<uint32_t> g_explicit_caches{0};
constinit pthread_key_t g_exit_key = 0;
constinit pthread_once_t g_exit_key_once = PTHREAD_ONCE_INIT;
constinit pthread_once_t g_size_classes_once = PTHREAD_ONCE_INIT;
constinit std::atomic<size_t> g_explicit_cache_bytes{0};

// Set on a thread once OnThreadExit has released its block. A key
// destructor that runs later and enters a scope then gets no block: glibc
// may not call OnThreadExit again, and the block would stay in the thread
// list, its owner_state pointing into the exited thread's TLS.
constinit thread_local bool t_block_released __attribute__((tls_model("initial-exec"))) = false;

// Blocks of exited threads, kept for the next threads' first scopes.
// memward's own arena purges freed pages at once, so a new block's pages
// were faulted in again by every short-lived thread that entered a scope.
// Guarded by g_thread_list_lock.
constexpr int kMaxSpareBlocks = 8;
constinit ThreadBlock* g_spare_blocks[kMaxSpareBlocks] = {};
constinit int g_spare_block_count = 0;

// Bytes of jemalloc's internal allocations in arena 0, where explicit caches
// live, as of a fresh epoch.
size_t InternalBytesOfArenaZero() {
  RefreshEpoch();
  return ReadSizeStatistic("stats.arenas.0.internal");
}

void FillSizeClasses() {
  uint32_t classes = 0;
  size_t previous = 0;
  for (size_t step = 0; step <= kCachedMaxSize / 8; step++) {
    size_t size = mwje_nallocx(step == 0 ? 1 : step * 8, 0);
    if (size != previous) {
      if (classes == kMaxCachedClasses) base::Fatal("more than %u size classes up to %zu bytes",
                                                    kMaxCachedClasses, kCachedMaxSize);
      size_t limit = kBinBytes / size;
      if (limit > kBinCapacity) limit = kBinCapacity;
      if (limit < 2) limit = 2;
      g_size_classes.limit_of[classes] = static_cast<uint32_t>(limit);
      g_size_classes.size_of[classes++] = static_cast<uint32_t>(size);
      previous = size;
    }
    g_size_classes.index_by_step[step] = static_cast<uint8_t>(classes - 1);
  }
}

void Link(ThreadBlock* block) {
  pthread_mutex_lock(&g_thread_list_lock);
  block->previous = nullptr;
  block->next = g_thread_list;
  if (g_thread_list != nullptr) g_thread_list->previous = block;
  g_thread_list = block;
  pthread_mutex_unlock(&g_thread_list_lock);
}

// REQUIRES g_thread_list_lock.
void UnlinkLocked(ThreadBlock* block) {
  if (block->previous != nullptr) block->previous->next = block->next;
  if (block->next != nullptr) block->next->previous = block->previous;
  if (g_thread_list == block) g_thread_list = block->next;
}

int TcacheFlag(uint16_t tcache) {
  return tcache == 0 ? kMallocxTcacheNone : MallocxTcache(tcache - 1u);
}

// Returns every binned object to jemalloc, then jemalloc's explicit cache to
// the arena.
void EmptyCache(SlotCache* cache) {
  for (CacheBin& bin : cache->bins) {
    for (uint32_t i = 0; i < bin.count; i++) mwje_dallocx(bin.objects[i], cache->arena_flags);
    bin.count = 0;
  }
  if (cache->tcache != 0) {
    unsigned index = cache->tcache - 1u;
    mwje_mallctl("tcache.flush", nullptr, nullptr, &index, sizeof(index));
  }
}

void DestroyCache(ThreadBlock* block, SlotCache* cache) {
  if (cache->slot == 0) return;
  EmptyCache(cache);
  if (cache->tcache != 0) {
    unsigned index = cache->tcache - 1u;
    mwje_mallctl("tcache.destroy", nullptr, nullptr, &index, sizeof(index));
    g_explicit_caches.fetch_sub(1, std::memory_order_relaxed);
  }
  block->cache_by_slot[cache->slot] = 0;
  cache->slot = 0;
  cache->tcache = 0;
}

void ReleaseBlock(ThreadBlock* block) {
  for (SlotCache& cache : block->caches) DestroyCache(block, &cache);
  pthread_mutex_lock(&g_thread_list_lock);
  const bool keep_spare = g_spare_block_count < kMaxSpareBlocks;
  if (keep_spare) g_spare_blocks[g_spare_block_count++] = block;
  pthread_mutex_unlock(&g_thread_list_lock);
  if (!keep_spare) FreeMemwardBlock(block, sizeof(ThreadBlock));
}

// Returns a spare block, or allocates one from memward's arena.
ThreadBlock* TakeBlock() {
  ThreadBlock* block = nullptr;
  pthread_mutex_lock(&g_thread_list_lock);
  if (g_spare_block_count > 0) block = g_spare_blocks[--g_spare_block_count];
  pthread_mutex_unlock(&g_thread_list_lock);
  if (block != nullptr) return block;
  return static_cast<ThreadBlock*>(AllocateMemwardBlock(sizeof(ThreadBlock)));
}

// The pthread key destructor: publishes the thread's batch and returns its
// caches and block. Runs on the exiting thread.
void OnThreadExit(void* value) {
  auto* block = static_cast<ThreadBlock*>(value);
  ThreadState& state = t_thread_state;
  // Destructors that run later may still allocate and free: outside any
  // scope, their allocations are untagged and their frees are credited at
  // once, since no batch of this thread will be published again.
  DetachFromScope(state);
  pthread_mutex_lock(&g_thread_list_lock);
  UnlinkLocked(block);
  pthread_mutex_unlock(&g_thread_list_lock);
  state.block = nullptr;
  t_block_released = true;
  ReleaseBlock(block);
}

void CreateExitKey() {
  if (pthread_key_create(&g_exit_key, OnThreadExit) != 0) {
    base::Log("pthread_key_create failed: caches of exiting threads are not returned");
  }
}

ThreadBlock* BlockOfThisThread() {
  ThreadState& state = t_thread_state;
  if (state.block != nullptr) return state.block;
  if (MEMWARD_UNLIKELY(t_block_released)) return nullptr;
  // A thread whose first memward call enters a scope starts on the engine
  // here, before the block's allocation creates jemalloc's thread cache
  // (alloc/thread_start.h). Started later, each such thread faulted in about
  // 17 pages.
  if (MEMWARD_UNLIKELY(!t_started_on_engine)) PrepareThread();
  pthread_once(&g_size_classes_once, FillSizeClasses);
  ThreadBlock* block = TakeBlock();
  if (block == nullptr) return nullptr;
  memset(block, 0, sizeof(ThreadBlock));
  block->owner_state = &state;
  state.block = block;
  Link(block);
  pthread_once(&g_exit_key_once, CreateExitKey);
  // glibc's pthread_setspecific callocs a second-level block for keys past
  // its 32 inline ones. That block is the process's memory, not the scope's
  // that the thread is entering (a request would report it as escaped), so
  // the call runs with the thread taken out of its scope.
  ThreadState saved = state;
  SetUnroutedScope(state, 0, 0);
  pthread_setspecific(g_exit_key, block);
  state = saved;
  return block;
}

// Returns jemalloc's explicit cache index + 1, or 0 when the pool is spent.
uint16_t CreateExplicitCache() {
  if (g_explicit_caches.fetch_add(1, std::memory_order_relaxed) >= kMaxExplicitCaches) {
    g_explicit_caches.fetch_sub(1, std::memory_order_relaxed);
    return 0;
  }
  const bool measure = g_explicit_cache_bytes.load(std::memory_order_relaxed) == 0;
  const size_t internal_before = measure ? InternalBytesOfArenaZero() : 0;
  unsigned index = 0;
  size_t length = sizeof(index);
  // The cache's stack is allocated zeroed and usually reuses the stack of
  // a destroyed one, which jemalloc would zero with MADV_DONTNEED.
  SetZeroingWithMemset(true);
  const int status = mwje_mallctl("tcache.create", &index, &length, nullptr, 0);
  SetZeroingWithMemset(false);
  if (status != 0 || index >= UINT16_MAX - 1) {
    g_explicit_caches.fetch_sub(1, std::memory_order_relaxed);
    return 0;
  }
  if (measure) {
    g_explicit_cache_bytes.store(InternalBytesOfArenaZero() - internal_before,
                                 std::memory_order_relaxed);
  }
  return static_cast<uint16_t>(index + 1);
}

// Returns a free cache of `block`, evicting the oldest when all are in use.
SlotCache* TakeFreeCache(ThreadBlock* block) {
  for (SlotCache& cache : block->caches) {
    if (cache.slot == 0) return &cache;
  }
  SlotCache* oldest = &block->caches[block->oldest];
  block->oldest = (block->oldest + 1) % kMaxCachesPerThread;
  if (t_thread_state.cache == oldest) {
    t_thread_state.cache = nullptr;
    t_thread_state.cached_slot = kNoCachedSlot;
  }
  DestroyCache(block, oldest);
  return oldest;
}

}  // namespace

SlotCache* CreateCacheForSlot(uint32_t slot) {
  ThreadBlock* block = BlockOfThisThread();
  if (block == nullptr) return nullptr;
  uint8_t entry = block->cache_by_slot[slot];
  if (entry != 0) return &block->caches[entry - 1];
  SlotCache* cache = TakeFreeCache(block);
  cache->slot = slot;
  cache->kind = SlotAt(slot).kind;
  // A request arena is emptied at every request end, and jemalloc 5.3 flushes
  // an explicit cache by destroying it (about 18,000 instructions), so request
  // arenas are cached by the SlotCache alone.
  cache->tcache = SlotAt(slot).kind == ArenaKind::kRequest ? 0 : CreateExplicitCache();
  cache->arena_flags = SlotAt(slot).arena_flag | TcacheFlag(cache->tcache);
  block->cache_by_slot[slot] = static_cast<uint8_t>(cache - block->caches + 1);
  return cache;
}

int FreeFlagsForSlot(uint32_t slot) {
  ThreadBlock* block = t_thread_state.block;
  if (block == nullptr || block->cache_by_slot[slot] == 0) return kMallocxTcacheNone;
  return TcacheFlag(block->caches[block->cache_by_slot[slot] - 1].tcache);
}

void* RefillAndTake(SlotCache* cache, uint32_t size_class) {
  const size_t size = g_size_classes.size_of[size_class];
  void* taken = mwje_mallocx(size, cache->arena_flags);
  if (taken == nullptr) return nullptr;
  // A block from another arena means jemalloc has torn down this thread's
  // state and ignores the arena flag: the caller detaches, and nothing from
  // another arena may enter the bins.
  const uint32_t entry = accounting::OwnerEntryOf(taken);
  if (accounting::SlotOfEntry(entry) != cache->slot) return taken;
  TagCachedBlock(entry, taken, size_class);
  CacheBin& bin = cache->bins[size_class];
  const uint32_t limit = g_size_classes.limit_of[size_class];
  for (uint32_t i = 1; i < kRefillCount && bin.count < limit; i++) {
    void* block = mwje_mallocx(size, cache->arena_flags);
    if (block == nullptr) break;
    TagCachedBlock(accounting::OwnerEntryOf(block), block, size_class);
    bin.objects[bin.count++] = block;
  }
  return taken;
}

void SpillAndPut(SlotCache* cache, uint32_t size_class, void* block) {
  CacheBin& bin = cache->bins[size_class];
  // The oldest half (at the bottom of the stack) goes back to jemalloc.
  const uint32_t spill = g_size_classes.limit_of[size_class] / 2;
  for (uint32_t i = 0; i < spill; i++) mwje_dallocx(bin.objects[i], cache->arena_flags);
  memmove(bin.objects, bin.objects + spill, (bin.count - spill) * sizeof(void*));
  bin.count -= spill;
  bin.objects[bin.count++] = block;
}

void FlushCacheForSlot(uint32_t slot) {
  ThreadBlock* block = t_thread_state.block;
  if (block == nullptr || block->cache_by_slot[slot] == 0) return;
  EmptyCache(&block->caches[block->cache_by_slot[slot] - 1]);
}

void FlushOwnCaches() {
  ThreadBlock* block = t_thread_state.block;
  if (block == nullptr) return;
  for (SlotCache& cache : block->caches) {
    if (cache.slot != 0) EmptyCache(&cache);
  }
}

uint32_t ExplicitCacheCount() { return g_explicit_caches.load(std::memory_order_relaxed); }

size_t ExplicitCacheBytes() {
  return ExplicitCacheCount() * g_explicit_cache_bytes.load(std::memory_order_relaxed);
}

void LockThreadListForFork() { pthread_mutex_lock(&g_thread_list_lock); }
void UnlockThreadListInParent() { pthread_mutex_unlock(&g_thread_list_lock); }

// In the child only the forking thread runs. The other threads' batches are
// published, but their caches and blocks are left allocated: a thread may
// have been halfway through a bin push or a jemalloc call when the fork
// happened, so returning its objects could free one twice. That leaves, per
// thread that did not survive, its ThreadBlock, the objects in its slot
// caches (up to about 0.6 MiB per slot) and those in its explicit jemalloc
// caches, as jemalloc does with those threads' own automatic caches.
void ResetThreadListInChild() {
  ThreadBlock* survivor = t_thread_state.block;
  for (ThreadBlock* block = g_thread_list; block != nullptr; block = block->next) {
    if (block == survivor) continue;
    ThreadState& dead = *block->owner_state;
    PublishThreadBatch(dead);
    // The thread is no longer inside its request, which may now be ended.
    if (dead.request_scope) SlotAt(dead.slot).inside.fetch_sub(1, std::memory_order_relaxed);
  }
  g_thread_list = nullptr;
  if (survivor != nullptr) {
    survivor->next = nullptr;
    survivor->previous = nullptr;
    g_thread_list = survivor;
  }
  pthread_mutex_unlock(&g_thread_list_lock);
}

}  // namespace memward::alloc
