// Scope entry and exit on the calling thread.
#include "alloc/scope.h"

#include "alloc/allocator.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/routing.h"
#include "alloc/thread_cache.h"
#include "alloc/thread_state.h"

namespace memward::alloc {
namespace {

// Makes `scope` current. The arena flags are looked up again rather than
// saved, because the thread's cache for a slot may have been evicted (and its
// jemalloc id reused) while an inner scope ran.
void Apply(ThreadState& state, const SavedScope& scope) {
  state.tenant = scope.tenant;
  state.slot = scope.slot;
  state.generation = scope.generation;
  state.cache = scope.slot == 0 ? nullptr : CacheForSlot(scope.slot);
  if (state.cache != nullptr) {
    state.arena_flags = state.cache->arena_flags;
  } else {
    state.arena_flags = scope.slot == 0 ? 0 : SlotAt(scope.slot).arena_flag | kMallocxTcacheNone;
  }
  state.shared_scope = scope.slot != 0 && SlotAt(scope.slot).kind == ArenaKind::kShared;
  state.request_scope = scope.slot != 0 && SlotAt(scope.slot).kind == ArenaKind::kRequest;
  state.slow_path = scope.slot != 0 ? 1 : 0;
}

}  // namespace

SavedScope CurrentScope() {
  const ThreadState& state = t_thread_state;
  return SavedScope{state.tenant, state.slot, state.generation};
}

SavedScope EnterScope(accounting::TenantId tenant, uint32_t slot, uint32_t generation) {
  Bootstrap();
  ThreadState& state = t_thread_state;
  SavedScope saved = CurrentScope();
  PublishThreadBatch(state);
  Apply(state, SavedScope{tenant, slot, generation});
  return saved;
}

void ExitScope(const SavedScope& saved) {
  ThreadState& state = t_thread_state;
  PublishThreadBatch(state);
  Apply(state, saved);
}

void FlushThread() {
  Bootstrap();
  PublishThreadBatch(t_thread_state);
  FlushOwnCaches();
  mwje_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
}

}  // namespace memward::alloc
