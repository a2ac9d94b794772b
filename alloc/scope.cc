// The out-of-line parts of scope entry and exit (alloc/scope.h).
#include "alloc/scope.h"

#include "alloc/allocator.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/routing.h"
#include "alloc/thread_cache.h"
#include "alloc/thread_state.h"

namespace memward::alloc {
// A request scope that has ended since it was saved is restored as its
// tenant's own scope (its arena may serve another request by now).
SavedScope RequestScopeStillValid(const SavedScope& saved) {
  const ArenaSlot& arena = SlotAt(saved.slot);
  if (arena.generation.load(std::memory_order_relaxed) == saved.generation &&
      arena.state.load(std::memory_order_acquire) == RequestState::kOpen) {
    return saved;
  }
  SavedScope own = saved;
  own.slot = accounting::TenantAt(saved.tenant).arena_slot.load(std::memory_order_relaxed);
  own.generation = 0;
  return own;
}

void FlushThread() {
  // The flush below may be the thread's first jemalloc call, which creates
  // its cache: it must be started on the engine first (alloc/thread_start.h).
  PrepareThread();
  PublishThreadBatch(t_thread_state);
  FlushOwnCaches();
  mwje_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
}

}  // namespace memward::alloc
