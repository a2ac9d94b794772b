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
  // `inside` counts the threads whose current scope is a request, whose
  // batches may still hold its numbers.
  if (state.request_scope) SlotAt(state.slot).inside.fetch_sub(1, std::memory_order_release);
  state.tenant = scope.tenant;
  state.slot = scope.slot;
  state.generation = scope.generation;
  if (scope.slot == 0) {
    state.cache = nullptr;
    state.arena_flags = 0;
    state.shared_scope = false;
    state.request_scope = false;
    state.slow_path = 0;
    return;
  }

  SlotCache* cache = CacheForSlot(scope.slot);
  ArenaKind kind;
  if (cache != nullptr) {
    state.arena_flags = cache->arena_flags;
    kind = cache->kind;
  } else {
    const ArenaSlot& arena = SlotAt(scope.slot);
    state.arena_flags = arena.arena_flag | kMallocxTcacheNone;
    kind = arena.kind;
  }
  state.cache = cache;
  state.shared_scope = kind == ArenaKind::kShared;
  state.request_scope = kind == ArenaKind::kRequest;
  state.slow_path = 1;
  if (state.request_scope) SlotAt(state.slot).inside.fetch_add(1, std::memory_order_acquire);
}

uint32_t ThreadTag() {
  auto address = reinterpret_cast<uintptr_t>(&t_thread_state);
  return static_cast<uint32_t>((address >> 12) ^ (address >> 28)) & 0xffff;
}

uint32_t TokenFor(uint32_t depth) { return (ThreadTag() << 16) | (depth & 0xffff); }

// Returns `saved`, or its tenant's own scope when `saved` names a request
// that has ended (its arena may serve another request by now).
SavedScope StillValid(const SavedScope& saved) {
  if (saved.slot == 0) return saved;
  const ArenaSlot& arena = SlotAt(saved.slot);
  if (arena.kind != ArenaKind::kRequest) return saved;
  if (arena.generation.load(std::memory_order_relaxed) == saved.generation &&
      arena.state.load(std::memory_order_acquire) == RequestState::kOpen) {
    return saved;
  }
  SavedScope own = saved;
  own.slot = accounting::TenantAt(saved.tenant).arena_slot.load(std::memory_order_relaxed);
  own.generation = 0;
  return own;
}

}  // namespace

SavedScope CurrentScope() {
  const ThreadState& state = t_thread_state;
  return SavedScope{state.tenant, state.slot, state.generation};
}

SavedScope EnterScope(accounting::TenantId tenant, uint32_t slot, uint32_t generation) {
  Bootstrap();
  UseScopes();
  ThreadState& state = t_thread_state;
  SavedScope saved = CurrentScope();
  saved.token = TokenFor(++state.scope_depth);
  PublishThreadBatch(state);
  Apply(state, SavedScope{tenant, slot, generation});
  return saved;
}

bool ExitScope(const SavedScope& saved) {
  ThreadState& state = t_thread_state;
  if (state.scope_depth == 0 || saved.token != TokenFor(state.scope_depth)) return false;
  state.scope_depth--;
  PublishThreadBatch(state);
  Apply(state, StillValid(saved));
  return true;
}

void FlushThread() {
  Bootstrap();
  PublishThreadBatch(t_thread_state);
  FlushOwnCaches();
  mwje_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
}

}  // namespace memward::alloc
