// Scopes and requests on the calling thread: what makes a tenant (and a
// request) current, so that the thread's allocations are routed and counted.
#ifndef MEMWARD_ALLOC_SCOPE_H_
#define MEMWARD_ALLOC_SCOPE_H_

#include <stdint.h>

#include <atomic>

#include "accounting/tenant.h"
#include "alloc/allocator.h"
#include "alloc/arena_registry.h"
#include "alloc/engine.h"
#include "alloc/macros.h"
#include "alloc/routing.h"
#include "alloc/shared_header.h"
#include "alloc/thread_cache.h"
#include "alloc/thread_state.h"

namespace memward::alloc {

// The thread's scope before an entry, restored at exit. `token` names the
// entry (the thread and the nesting depth), so an exit out of order or on
// another thread is detected.
struct SavedScope {
  accounting::TenantId tenant = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint32_t token = 0;
};

// Makes (`tenant`, `slot`, `generation`) current on the calling thread after
// publishing the thread's batch, and returns the previous scope. `slot` 0
// with tenant 0 is the untagged process scope. Requires a completed
// Bootstrap (the C API's allocator check runs it).
MEMWARD_ALWAYS_INLINE SavedScope EnterScope(accounting::TenantId tenant, uint32_t slot,
                                            uint32_t generation);

// Restores `saved` after publishing the thread's batch. Returns false, and
// changes nothing, when `saved` is not the innermost entry of this thread. A
// saved request that has ended since is restored as its tenant's own scope.
MEMWARD_ALWAYS_INLINE bool ExitScope(const SavedScope& saved);

// The calling thread's current scope.
MEMWARD_ALWAYS_INLINE SavedScope CurrentScope() {
  const ThreadState& state = t_thread_state;
  return SavedScope{state.tenant, state.slot, state.generation};
}

// Publishes the calling thread's batch and flushes its thread caches.
void FlushThread();

// The rest of this file is the inline fast path of scope entry and exit, as
// memward_scope_enter and memward_scope_exit run it. It makes no call unless
// a batch must be published or the thread has no cache for the slot yet. An entry and exit through the C API took 287
// instructions as out-of-line calls and take 188 inlined (callgrind,
// tenant_micro's BM_ScopeEnterExit).

// Out of line: a saved request scope whose request has ended is restored as
// its tenant's own scope.
SavedScope RequestScopeStillValid(const SavedScope& saved);

// `inside` counts the threads whose current scope is a request, whose
// batches may still hold its numbers.
MEMWARD_ALWAYS_INLINE void LeaveRequest(const ThreadState& state) {
  if (MEMWARD_UNLIKELY(state.request_scope)) {
    SlotAt(state.slot).inside.fetch_sub(1, std::memory_order_release);
  }
}

// Makes `scope`, served by the automatic arenas (slot 0), current.
MEMWARD_ALWAYS_INLINE void ApplyUntagged(ThreadState& state, const SavedScope& scope) {
  LeaveRequest(state);
  SetUnroutedScope(state, scope.tenant, scope.generation);
}

// Makes the tenant or request scope `scope` (slot not 0) current. The arena
// flags are looked up again rather than saved, because the thread's cache
// for a slot may have been evicted (and its jemalloc id reused) while an
// inner scope ran. memward's own scope gets no caches: its allocations are
// few and cold, and a thread block with a jemalloc thread cache costs
// about 50 KiB on each thread that enters it (the warden, the thread that
// starts the admin server).
MEMWARD_ALWAYS_INLINE void ApplyRouted(ThreadState& state, const SavedScope& scope) {
  LeaveRequest(state);
  state.tenant = scope.tenant;
  state.slot = scope.slot;
  state.generation = scope.generation;
  SlotCache* cache =
      scope.tenant == accounting::kMemwardTenant ? nullptr : CacheForSlot(scope.slot);
  ArenaKind kind;
  if (MEMWARD_LIKELY(cache != nullptr)) {
    state.arena_flags = cache->arena_flags;
    kind = cache->kind;
  } else {
    const ArenaSlot& arena = SlotAt(scope.slot);
    state.arena_flags = arena.arena_flag | kMallocxTcacheNone;
    kind = arena.kind;
    // Without a cache the thread may have no block, and so no exit key that
    // publishes its batch when it ends. Each operation publishes at once.
    state.publish_countdown = 0;
  }
  state.cache = cache;
  state.cached_slot = cache != nullptr ? scope.slot : kNoCachedSlot;
  state.tenant_record = &accounting::TenantAt(scope.tenant);
  state.shared_scope = kind == ArenaKind::kShared;
  state.request_scope = kind == ArenaKind::kRequest;
  if (state.shared_scope) {
    state.header_word0 = SharedHeaderWord0(scope.tenant);
    state.header_seed = SharedHeaderSeed(scope.tenant, kSharedHeaderSize);
  }
  ParkSampleCountdown(state);
  if (state.request_scope) SlotAt(state.slot).inside.fetch_add(1, std::memory_order_acquire);
}

MEMWARD_ALWAYS_INLINE void Apply(ThreadState& state, const SavedScope& scope) {
  if (scope.slot == 0) return ApplyUntagged(state, scope);
  ApplyRouted(state, scope);
}

// Publishes the batch, unless it is empty, before the scope changes.
MEMWARD_ALWAYS_INLINE void PublishBeforeChange(ThreadState& state) {
  if (MEMWARD_UNLIKELY(!state.batch.Empty())) return PublishThreadBatch(state);
  state.publish_countdown = accounting::kBatchBytes;
}

// Names the entry at `depth` on the calling thread, so that an exit out of
// order or on another thread is detected.
MEMWARD_ALWAYS_INLINE uint32_t TokenFor(uint32_t depth) {
  auto address = reinterpret_cast<uintptr_t>(&t_thread_state);
  uint32_t thread_tag = static_cast<uint32_t>((address >> 12) ^ (address >> 28)) & 0xffff;
  return (thread_tag << 16) | (depth & 0xffff);
}

// Returns `saved`, or its tenant's own scope when `saved` names a request
// that has ended.
MEMWARD_ALWAYS_INLINE SavedScope StillValid(const SavedScope& saved) {
  if (saved.slot == 0 || SlotAt(saved.slot).kind != ArenaKind::kRequest) return saved;
  return RequestScopeStillValid(saved);
}

MEMWARD_ALWAYS_INLINE SavedScope EnterScope(accounting::TenantId tenant, uint32_t slot,
                                            uint32_t generation) {
  ThreadState& state = t_thread_state;
  SavedScope saved = CurrentScope();
  saved.token = TokenFor(++state.scope_depth);
  PublishBeforeChange(state);
  Apply(state, SavedScope{tenant, slot, generation});
  return saved;
}

MEMWARD_ALWAYS_INLINE bool ExitScope(const SavedScope& saved) {
  ThreadState& state = t_thread_state;
  if (state.scope_depth == 0 || saved.token != TokenFor(state.scope_depth)) return false;
  state.scope_depth--;
  PublishBeforeChange(state);
  Apply(state, StillValid(saved));
  return true;
}

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_SCOPE_H_
