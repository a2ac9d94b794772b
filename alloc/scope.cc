// Scope entry and exit on the calling thread.
#include "alloc/scope.h"

#include "alloc/allocator.h"
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
  state.arena_flags = scope.slot == 0 ? 0 : ArenaFlagsForSlot(scope.slot);
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
  FlushOwnExplicitCaches();
  mwje_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
}

}  // namespace memward::alloc
