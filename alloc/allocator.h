// The allocation paths every exported entry point goes through.
//
// The fast path is one TLS load and one branch in front of the engine's own
// fast path: a thread whose ThreadState asks for nothing calls jemalloc
// directly. Everything else (a thread's first call, which runs the bootstrap)
// leaves through one unlikely branch into a non-inlined slow path.
//
// Errors follow C and POSIX: the callers in malloc_api.cc, glibc_api.cc and
// new_delete.cc map a null result to errno or an exception.
#ifndef MEMWARD_ALLOC_ALLOCATOR_H_
#define MEMWARD_ALLOC_ALLOCATOR_H_

#include <errno.h>
#include <stddef.h>

#include "alloc/engine.h"
#include "alloc/macros.h"
#include "alloc/thread_state.h"

namespace memward::alloc {

// Prepares the calling thread (bootstrap on its first call) and clears its
// slow-path flag.
MEMWARD_NOINLINE void PrepareThread();

MEMWARD_ALWAYS_INLINE void EnterAllocation() {
  if (MEMWARD_UNLIKELY(t_thread_state.slow_path != 0)) PrepareThread();
}

// Returns memory for `size` bytes, or nullptr with errno set to ENOMEM.
MEMWARD_ALWAYS_INLINE void* Allocate(size_t size) {
  EnterAllocation();
  return mwje_malloc(size);
}

// Returns zeroed memory for count * size bytes, or nullptr with errno set to
// ENOMEM (also when the product overflows).
MEMWARD_ALWAYS_INLINE void* AllocateZeroed(size_t count, size_t size) {
  EnterAllocation();
  return mwje_calloc(count, size);
}

// Returns memory aligned to `alignment` (a power of two), or nullptr without
// touching errno. A size of 0 is served as 1 byte: mallocx does not take 0.
MEMWARD_ALWAYS_INLINE void* AllocateAligned(size_t size, size_t alignment) {
  EnterAllocation();
  return mwje_mallocx(size == 0 ? 1 : size, MallocxAlign(alignment));
}

// Resizes `pointer` (not null) to `size` bytes (not 0), or returns nullptr
// with errno set to ENOMEM and `pointer` untouched.
MEMWARD_ALWAYS_INLINE void* Reallocate(void* pointer, size_t size) {
  EnterAllocation();
  void* result = mwje_realloc(pointer, size);
  // jemalloc 5.3 leaves errno alone when the size is beyond its largest class.
  if (MEMWARD_UNLIKELY(result == nullptr)) errno = ENOMEM;
  return result;
}

MEMWARD_ALWAYS_INLINE void Deallocate(void* pointer) { mwje_free(pointer); }

// Frees `pointer` (not null) whose requested size was `size`; the size picks
// the size class without a lookup, so it must be the one allocated.
MEMWARD_ALWAYS_INLINE void DeallocateSized(void* pointer, size_t size) {
  mwje_sdallocx(pointer, size, 0);
}

MEMWARD_ALWAYS_INLINE void DeallocateSizedAligned(void* pointer, size_t size, size_t alignment) {
  mwje_sdallocx(pointer, size, MallocxAlign(alignment));
}

MEMWARD_ALWAYS_INLINE size_t UsableSize(const void* pointer) {
  return pointer == nullptr ? 0 : mwje_malloc_usable_size(pointer);
}

// Returns whether `alignment` is a power of two, which jemalloc requires.
constexpr bool IsPowerOfTwo(size_t alignment) {
  return alignment != 0 && (alignment & (alignment - 1)) == 0;
}

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_ALLOCATOR_H_
