// The allocation paths every exported entry point goes through.
//
// Allocation: every entry point first subtracts the requested size from the
// sampler's per-thread countdown and branches on its sign (alloc/sampling.h).
// The rest of the fast path is one load and one branch in front of the
// engine's own fast path. A thread outside any scope calls jemalloc directly;
// a thread's first call (which runs the bootstrap) and every call inside a
// tenant or request scope leave through one unlikely branch into
// alloc/routing.h.
//
// Free: two loads (the owner map's base and the chunk's entry) tell whether a
// memward arena owns the pointer. Untagged memory goes straight to jemalloc.
// Memory of the thread's own scope goes to its bin by the page tag
// (alloc/page_tags.h).
//
// Errors follow C and POSIX: a null result has errno set to ENOMEM unless the
// comment of the function says otherwise.
#ifndef MEMWARD_ALLOC_ALLOCATOR_H_
#define MEMWARD_ALLOC_ALLOCATOR_H_

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "accounting/owner_map.h"
#include "alloc/engine.h"
#include "alloc/macros.h"
#include "alloc/routing.h"
#include "alloc/sampling.h"
#include "alloc/thread_state.h"

namespace memward::alloc {

// Runs the bootstrap on the thread's first call and leaves the slow-path flag
// set only while the thread is in a scope.
MEMWARD_NOINLINE void PrepareThread();

MEMWARD_ALWAYS_INLINE bool TakesSlowPath() { return t_thread_state.slow_path != 0; }

// For entry points that do not allocate but need the bootstrap (mallctl).
MEMWARD_ALWAYS_INLINE void EnterAllocation() {
  if (MEMWARD_UNLIKELY(TakesSlowPath())) PrepareThread();
}

// The paths after a crossed countdown: the thread's slow-path flag sends its
// first call (the bootstrap) and every call inside a scope to the slot
// cache's path. The fast paths below need no such test, because a thread on
// the slow path has its countdown parked, so that every call crosses it.
MEMWARD_ALWAYS_INLINE void* AllocateUnsampled(size_t size) {
  if (MEMWARD_UNLIKELY(TakesSlowPath())) return AllocateSlowMalloc(size);
  return mwje_malloc(size);
}

MEMWARD_ALWAYS_INLINE void* Allocate(size_t size) {
  if (SampleCountdownCrossed(size)) {
    if (TakeFromParkedCountdown(size)) return AllocateSlowMalloc(size);
    return AllocateAfterCountdown(size);
  }
  return mwje_malloc(size);
}

// Zeroed memory for count * size bytes; an overflowing product gives ENOMEM.
MEMWARD_ALWAYS_INLINE void* AllocateZeroedUnsampled(size_t count, size_t size) {
  if (MEMWARD_UNLIKELY(TakesSlowPath())) {
    size_t total = 0;
    if (__builtin_mul_overflow(count, size, &total)) {
      errno = ENOMEM;
      return nullptr;
    }
    return AllocateSlow(total, 0, true);
  }
  return mwje_calloc(count, size);
}

// The countdown takes the product modulo 2^64; an overflowing product is
// sorted out after a crossing.
MEMWARD_ALWAYS_INLINE void* AllocateZeroed(size_t count, size_t size) {
  if (SampleCountdownCrossed(count * size)) return AllocateZeroedAfterCountdown(count, size);
  return mwje_calloc(count, size);
}

// Memory aligned to `alignment` (a power of two). Returns nullptr without
// touching errno outside a scope, as mallocx does; callers set it.
MEMWARD_ALWAYS_INLINE void* AllocateAlignedUnsampled(size_t size, size_t alignment) {
  if (MEMWARD_UNLIKELY(TakesSlowPath())) return AllocateSlow(size, alignment, false);
  return mwje_mallocx(size == 0 ? 1 : size, MallocxAlign(alignment));
}

MEMWARD_ALWAYS_INLINE void* AllocateAligned(size_t size, size_t alignment) {
  if (SampleCountdownCrossed(size)) return AllocateAlignedAfterCountdown(size, alignment);
  return mwje_mallocx(size == 0 ? 1 : size, MallocxAlign(alignment));
}

// Resizes `pointer` (not null) to `size` bytes (not 0). On failure returns
// nullptr with errno set to ENOMEM and leaves `pointer` untouched.
MEMWARD_ALWAYS_INLINE void* ReallocateUnsampled(void* pointer, size_t size) {
  uint16_t slot = accounting::OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(TakesSlowPath() || slot != 0)) return ReallocateSlow(pointer, size, slot);
  void* result = mwje_realloc(pointer, size);
  // jemalloc 5.3 leaves errno alone when the size is beyond its largest class.
  if (MEMWARD_UNLIKELY(result == nullptr)) errno = ENOMEM;
  return result;
}

MEMWARD_ALWAYS_INLINE void* Reallocate(void* pointer, size_t size) {
  if (SampleCountdownCrossed(size)) return ReallocateAfterCountdown(pointer, size);
  return ReallocateUnsampled(pointer, size);
}

// Frees `pointer`; NULL is ignored.
MEMWARD_ALWAYS_INLINE void Deallocate(void* pointer) {
  uint32_t entry = accounting::OwnerEntryOf(pointer);
  if (MEMWARD_UNLIKELY(entry != 0)) return FreeOwnedEntry(pointer, entry);
  mwje_free(pointer);
}

// Frees `pointer` (null is ignored) whose requested size was `size`, which must be
// the one allocated, as C++ sized delete and C23 free_sized require. Both
// memward's arenas and jemalloc then use the size to skip a lookup, as
// jemalloc's own sized delete does. Untagged blocks above 4 KiB, and
// page-aligned ones, go to jemalloc's free, because sdallocx takes its
// general path there (98 instructions per call against 37 for free in
// Debian's jemalloc 5.3.0, callgrind).
MEMWARD_ALWAYS_INLINE void DeallocateSized(void* pointer, size_t size) {
  if (MEMWARD_LIKELY(accounting::AboveOwnedRange(pointer))) {
    const bool page_aligned = (reinterpret_cast<uintptr_t>(pointer) & kEnginePageMask) == 0;
    if (MEMWARD_LIKELY(size <= kEngineSizeLookupMax && !page_aligned)) {
      return mwje_sdallocx_noflags(pointer, size);
    }
    return mwje_free(pointer);
  }
  uint16_t slot = accounting::OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(slot != 0)) return FreeOwnedSized(pointer, slot, size);
  mwje_free(pointer);
}

MEMWARD_ALWAYS_INLINE void DeallocateSizedAligned(void* pointer, size_t size, size_t alignment) {
  uint16_t slot = accounting::OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(slot != 0)) return FreeOwned(pointer, slot);
  mwje_free(pointer);
}

MEMWARD_ALWAYS_INLINE size_t UsableSize(const void* pointer) {
  if (pointer == nullptr) return 0;
  uint16_t slot = accounting::OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(slot != 0)) return UsableSizeOwned(pointer, slot);
  return mwje_malloc_usable_size(pointer);
}

// Returns whether `alignment` is a power of two, which jemalloc requires.
constexpr bool IsPowerOfTwo(size_t alignment) {
  return alignment != 0 && (alignment & (alignment - 1)) == 0;
}

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_ALLOCATOR_H_
