// Per-thread explicit caches, the list of thread blocks, and their clean-up.
#include "alloc/thread_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <atomic>

#include "alloc/engine.h"
#include "alloc/routing.h"
#include "alloc/thread_state.h"
#include "base/log.h"

namespace memward::alloc {
namespace {

constexpr uint16_t kNoCache = UINT16_MAX;

// Guards the list of thread blocks. Lock order: after g_arena_lock.
constinit pthread_mutex_t g_thread_list_lock = PTHREAD_MUTEX_INITIALIZER;
constinit ThreadBlock* g_thread_list = nullptr;
constinit std::atomic<uint32_t> g_explicit_caches{0};
constinit pthread_key_t g_exit_key = 0;
constinit pthread_once_t g_exit_key_once = PTHREAD_ONCE_INIT;

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

void DestroyCache(ThreadBlock* block, uint32_t slot) {
  uint16_t entry = block->cache_by_slot[slot];
  block->cache_by_slot[slot] = 0;
  if (entry == 0 || entry == kNoCache) return;
  unsigned cache = entry - 1u;
  mwje_mallctl("tcache.destroy", nullptr, nullptr, &cache, sizeof(cache));
  g_explicit_caches.fetch_sub(1, std::memory_order_relaxed);
}

void DestroyCaches(ThreadBlock* block) {
  for (uint32_t i = 0; i < block->cache_count; i++) DestroyCache(block, block->cached_slots[i]);
  block->cache_count = 0;
}

// Makes room for one more cache on this thread, destroying the oldest.
void EvictIfFull(ThreadBlock* block) {
  if (block->cache_count < kMaxCachesPerThread) return;
  DestroyCache(block, block->cached_slots[block->oldest]);
}

void Remember(ThreadBlock* block, uint32_t slot) {
  if (block->cache_count < kMaxCachesPerThread) {
    block->cached_slots[block->cache_count++] = static_cast<uint16_t>(slot);
    return;
  }
  block->cached_slots[block->oldest] = static_cast<uint16_t>(slot);
  block->oldest = (block->oldest + 1) % kMaxCachesPerThread;
}

void ReleaseBlock(ThreadBlock* block) {
  DestroyCaches(block);
  FreeMemwardBlock(block, sizeof(ThreadBlock));
}

// The pthread key destructor: publishes the thread's batch and returns its
// caches and block. Runs on the exiting thread.
void OnThreadExit(void* value) {
  auto* block = static_cast<ThreadBlock*>(value);
  ThreadState& state = t_thread_state;
  PublishThreadBatch(state);
  pthread_mutex_lock(&g_thread_list_lock);
  UnlinkLocked(block);
  pthread_mutex_unlock(&g_thread_list_lock);
  state.block = nullptr;
  ReleaseBlock(block);
}

void CreateExitKey() {
  if (pthread_key_create(&g_exit_key, OnThreadExit) != 0) {
    base::Log("pthread_key_create failed: thread caches of exiting threads are not returned");
  }
}

ThreadBlock* BlockOfThisThread() {
  ThreadState& state = t_thread_state;
  if (state.block != nullptr) return state.block;
  auto* block = static_cast<ThreadBlock*>(AllocateMemwardBlock(sizeof(ThreadBlock)));
  if (block == nullptr) return nullptr;
  memset(block, 0, sizeof(ThreadBlock));
  block->owner_state = &state;
  state.block = block;
  Link(block);
  pthread_once(&g_exit_key_once, CreateExitKey);
  pthread_setspecific(g_exit_key, block);
  return block;
}

// Returns the calling thread's cache index + 1 for `slot`, creating it, or
// kNoCache when the pool of explicit caches is spent.
uint16_t CacheEntryForSlot(ThreadBlock* block, uint32_t slot) {
  uint16_t entry = block->cache_by_slot[slot];
  if (entry != 0) return entry;
  EvictIfFull(block);
  entry = kNoCache;
  if (g_explicit_caches.fetch_add(1, std::memory_order_relaxed) < kMaxExplicitCaches) {
    unsigned cache = 0;
    size_t length = sizeof(cache);
    if (mwje_mallctl("tcache.create", &cache, &length, nullptr, 0) == 0 && cache < kNoCache - 1) {
      entry = static_cast<uint16_t>(cache + 1);
    } else {
      g_explicit_caches.fetch_sub(1, std::memory_order_relaxed);
    }
  } else {
    g_explicit_caches.fetch_sub(1, std::memory_order_relaxed);
  }
  block->cache_by_slot[slot] = entry;
  if (entry != kNoCache) Remember(block, slot);
  return entry;
}

int CacheFlag(uint16_t entry) {
  return entry == 0 || entry == kNoCache ? kMallocxTcacheNone : MallocxTcache(entry - 1u);
}

}  // namespace

int ArenaFlagsForSlot(uint32_t slot) {
  ThreadBlock* block = BlockOfThisThread();
  uint16_t entry = block == nullptr ? kNoCache : CacheEntryForSlot(block, slot);
  return SlotAt(slot).arena_flag | CacheFlag(entry);
}

int FreeFlagsForSlot(uint32_t slot) {
  ThreadBlock* block = t_thread_state.block;
  return CacheFlag(block == nullptr ? 0 : block->cache_by_slot[slot]);
}

void FlushCacheForSlot(uint32_t slot) {
  ThreadBlock* block = t_thread_state.block;
  if (block == nullptr) return;
  uint16_t entry = block->cache_by_slot[slot];
  if (entry == 0 || entry == kNoCache) return;
  unsigned cache = entry - 1u;
  mwje_mallctl("tcache.flush", nullptr, nullptr, &cache, sizeof(cache));
}

void FlushOwnExplicitCaches() {
  ThreadBlock* block = t_thread_state.block;
  if (block == nullptr) return;
  for (uint32_t i = 0; i < block->cache_count; i++) FlushCacheForSlot(block->cached_slots[i]);
}

void LockThreadListForFork() { pthread_mutex_lock(&g_thread_list_lock); }
void UnlockThreadListInParent() { pthread_mutex_unlock(&g_thread_list_lock); }

// In the child only the forking thread runs: publish the batches of the
// threads that did not survive and return their caches and blocks.
void ResetThreadListInChild() {
  ThreadBlock* survivor = t_thread_state.block;
  ThreadBlock* block = g_thread_list;
  g_thread_list = nullptr;
  pthread_mutex_unlock(&g_thread_list_lock);
  while (block != nullptr) {
    ThreadBlock* next = block->next;
    if (block == survivor) {
      Link(block);
    } else {
      PublishThreadBatch(*block->owner_state);
      ReleaseBlock(block);
    }
    block = next;
  }
}

}  // namespace memward::alloc
