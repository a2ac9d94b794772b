// memward's per-thread state: one small initial-exec TLS block.
//
// It stays small (under 160 bytes): a library loaded after start-up is served
// from glibc's static TLS surplus, and the embedded jemalloc already takes
// about 2.6 KiB of it. The per-thread table of explicit thread caches is
// larger and lives in a ThreadBlock allocated on the thread's first scope.
#ifndef MEMWARD_ALLOC_THREAD_STATE_H_
#define MEMWARD_ALLOC_THREAD_STATE_H_

#include <stdint.h>

#include "accounting/tenant.h"
#include "alloc/thread_start.h"

namespace memward::alloc {

struct ThreadBlock;
struct SlotCache;

// ThreadState::cached_slot outside any scope with a cache: no arena slot has
// this number.
inline constexpr uint32_t kNoCachedSlot = UINT32_MAX;

struct ThreadState {
  // Non-zero sends this thread's allocations to the slow path: it starts at 1
  // (the TLS image holds it), so each thread's first allocation runs the
  // bootstrap, and it stays 1 while the thread is inside a tenant scope.
  // Invariant: while it is non-zero, `sample_countdown` is parked (below).
  // Change it only through ParkSampleCountdown and UnparkSampleCountdown.
  uint8_t slow_path = 1;

  // The current scope: its tenant, the arena slot that serves it (0 for the
  // automatic arenas) and, for a request arena, the request's generation.
  accounting::TenantId tenant = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  // Scopes entered and not yet exited, for the tokens of alloc/scope.h.
  uint32_t scope_depth = 0;
  // mallocx flags for the scope's arena and this thread's cache for it, and
  // the thread's SlotCache for the slot (nullptr outside scopes).
  int arena_flags = 0;
  SlotCache* cache = nullptr;
  // Derived at scope entry, for the fast paths of alloc/routing.cc:
  //  - `cached_slot` is `slot` while `cache` is set and kNoCachedSlot
  //    otherwise, so free tests "own scope, with a cache" in one compare;
  //  - `tenant_record` is the scope tenant's entry while `cache` is set;
  //  - in a shared-arena scope, `header_word0` and `header_seed` are the
  //    owner header's first word and its check seed (alloc/shared_header.h).
  uint32_t cached_slot = kNoCachedSlot;
  uint32_t header_seed = 0;
  uint64_t header_word0 = 0;
  const accounting::Tenant* tenant_record = nullptr;

  // What the scope's slot is, cached at scope entry for the routed paths.
  bool shared_scope = false;
  bool request_scope = false;
  // Set to 1 by the C API's allocator probe. The slow path sets it to 2.
  uint8_t probe = 0;

  // Unpublished counts for the scope's tenant (and request), published when
  // `publish_countdown` runs out and whenever the scope changes. Each
  // operation takes its bytes plus kBatchBytes / kBatchOperations from the
  // countdown, so a batch never exceeds kBatchBytes or kBatchOperations.
  // In a routed scope without a slot cache (memward's own) the countdown
  // stays 0, so every operation publishes.
  accounting::TenantDelta batch;
  int64_t publish_countdown = accounting::kBatchBytes;

  ThreadBlock* block = nullptr;

  // The allocation sampler (alloc/sampling.h). Every allocation subtracts its
  // requested size from `sample_countdown`; the allocation that takes it to
  // 0 or below enters the sampler's slow path. 0 in the TLS image, so each
  // thread's first allocation sets the sampler up. Gaps longer than the
  // sampler's recheck step are fed in steps, with the rest in
  // `sample_gap_rest`, so that a changed interval (a new `sample_epoch`)
  // takes effect within one step.
  //
  // The countdown is also the fast path's only test. While `slow_path` is
  // set it is parked: the sampler's countdown moves to `parked_countdown`
  // and `sample_countdown` is 0, so that every allocation runs it out
  // and reaches the slow path, whatever its size (SampleCountdownCrossed
  // compares without sign). Outside the parked state it stays between 0
  // (the next allocation settles a crossing) and INT64_MAX whenever the
  // fast path can read it.
  int64_t sample_countdown = 0;
  int64_t parked_countdown = 0;
  int64_t sample_gap_rest = 0;
  uint64_t sample_random = 0;  // xorshift64* state; 0 until seeded
  uint32_t sample_epoch = 0;
  // Stack captures of this thread so far, counted up to a few
  // (accounting/stack_capture.cc).
  uint8_t sample_captures = 0;
  // gettid(), cached by the first sample; the fork handler clears it in the
  // child, whose thread has a new id.
  uint32_t sample_thread_id = 0;
};

static_assert(sizeof(ThreadState) <= 160, "keep the initial-exec TLS block small");

// Sends every allocation of the thread to the slow path: sets `slow_path`
// and parks the sampler's countdown, unless it is parked already.
inline void ParkSampleCountdown(ThreadState& state) {
  if (state.slow_path == 0) state.parked_countdown = state.sample_countdown;
  state.sample_countdown = 0;
  state.slow_path = 1;
}

// Lets the thread's allocations take the fast path again: clears `slow_path`
// and gives the sampler's countdown back to the fast path. A countdown that
// is not positive (one crossing still to be decided) becomes 0, so the next
// allocation decides it. A thread that has not started on the engine yet
// (its first memward call entered a scope) stays parked until its first
// untagged allocation has run PrepareThread.
inline void UnparkSampleCountdown(ThreadState& state) {
  if (!t_started_on_engine) return;
  if (state.slow_path != 0) {
    state.sample_countdown = state.parked_countdown > 0 ? state.parked_countdown : 0;
  }
  state.slow_path = 0;
}

// The sampler's countdown: `sample_countdown`, or `parked_countdown` while
// the thread is on the slow path.
inline int64_t& SamplerCountdown(ThreadState& state) {
  return state.slow_path != 0 ? state.parked_countdown : state.sample_countdown;
}

// Makes the thread's allocations go to the automatic arenas, counted for
// `tenant` (0 for the process), with no routed scope and no slot cache.
inline void SetUnroutedScope(ThreadState& state, accounting::TenantId tenant,
                             uint32_t generation) {
  state.tenant = tenant;
  state.slot = 0;
  state.generation = generation;
  state.arena_flags = 0;
  state.cache = nullptr;
  state.cached_slot = kNoCachedSlot;
  state.shared_scope = false;
  state.request_scope = false;
  UnparkSampleCountdown(state);
}

// constinit: the TLS image holds the initial value, so no per-access
// initialisation check is compiled into the fast path.
extern constinit thread_local ThreadState t_thread_state __attribute__((tls_model("initial-exec")));

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_THREAD_STATE_H_
