// The C and POSIX allocation functions that memward exports.
//
// Each function follows the C standard, POSIX and glibc where they speak:
//  - calloc and reallocarray give NULL with ENOMEM when count * size overflows;
//  - posix_memalign returns EINVAL for an alignment that is not a power of two
//    multiple of sizeof(void*) and never changes errno;
//  - aligned_alloc gives NULL with EINVAL for an alignment that is not a power
//    of two; like glibc it accepts a size that is not a multiple of it (C17);
//  - memalign rounds an alignment that is not a power of two up to the next
//    one, as glibc does;
//  - realloc(p, 0) frees p and returns NULL, as glibc does; realloc(NULL, n) is
//    malloc(n);
//  - pvalloc rounds the size up to whole pages (one page for 0);
//  - free and its sized forms never change errno (alloc/engine_shims.cc).
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc/allocator.h"
#include "alloc/bootstrap.h"
#include "alloc/thread_start.h"

using namespace memward::alloc;

// Starts the memward_text section, where the exported entry points are, at
// a 64-byte boundary, so that their placement within cache lines does not
// change with the size of the code linked before them, as jemalloc's code
// is aligned (cmake/EmbeddedJemalloc.cmake).
asm(R"(
  .pushsection memward_text, "ax", @progbits
  .balign 64
  .popsection
)");

namespace {

// Returns nullptr with errno set to ENOMEM, for results that jemalloc's
// mallocx does not set errno for.
void* OutOfMemory() {
  errno = ENOMEM;
  return nullptr;
}

void* AllocateAlignedOrSetErrno(size_t size, size_t alignment) {
  void* result = AllocateAligned(size, alignment);
  return result != nullptr ? result : OutOfMemory();
}

size_t RoundUpToPowerOfTwo(size_t value) {
  if (value <= 1) return 1;
  return size_t{1} << (64 - __builtin_clzl(value - 1));
}

}  // namespace

extern "C" {

MEMWARD_EXPORT void* malloc(size_t size) { return Allocate(size); }

// free(NULL) needs no test of its own: the owner map has no owner for the
// first chunk, and jemalloc's free ignores NULL.
MEMWARD_EXPORT void free(void* pointer) { Deallocate(pointer); }

MEMWARD_EXPORT void* calloc(size_t count, size_t size) { return AllocateZeroed(count, size); }

MEMWARD_EXPORT void* realloc(void* pointer, size_t size) {
  if (pointer == nullptr) return Allocate(size);
  if (size == 0) {
    Deallocate(pointer);
    return nullptr;
  }
  return Reallocate(pointer, size);
}

MEMWARD_EXPORT void* reallocarray(void* pointer, size_t count, size_t size) {
  size_t total = 0;
  if (__builtin_mul_overflow(count, size, &total)) return OutOfMemory();
  return realloc(pointer, total);
}

MEMWARD_EXPORT int posix_memalign(void** result, size_t alignment, size_t size) {
  if (!IsPowerOfTwo(alignment) || alignment % sizeof(void*) != 0) return EINVAL;
  int saved_errno = errno;
  void* memory = AllocateAligned(size, alignment);
  errno = saved_errno;
  if (memory == nullptr) return ENOMEM;
  *result = memory;
  return 0;
}

MEMWARD_EXPORT void* aligned_alloc(size_t alignment, size_t size) {
  if (!IsPowerOfTwo(alignment)) {
    errno = EINVAL;
    return nullptr;
  }
  return AllocateAlignedOrSetErrno(size, alignment);
}

MEMWARD_EXPORT void* memalign(size_t alignment, size_t size) {
  if (alignment > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  return AllocateAlignedOrSetErrno(size, RoundUpToPowerOfTwo(alignment));
}

MEMWARD_EXPORT void* valloc(size_t size) { return AllocateAlignedOrSetErrno(size, PageSize()); }

MEMWARD_EXPORT void* pvalloc(size_t size) {
  const size_t page = PageSize();
  if (size > SIZE_MAX - (page - 1)) return OutOfMemory();
  size_t rounded = size == 0 ? page : (size + page - 1) & ~(page - 1);
  return AllocateAlignedOrSetErrno(rounded, page);
}

MEMWARD_EXPORT size_t malloc_usable_size(void* pointer) { return UsableSize(pointer); }

// C23: the size (and alignment) must be those the memory was allocated with,
// so the sized path of the engine can skip its size lookup. Null needs no
// test: it lies below the owned range's end and reaches jemalloc's free.
MEMWARD_EXPORT void free_sized(void* pointer, size_t size) { DeallocateSized(pointer, size); }

MEMWARD_EXPORT void free_aligned_sized(void* pointer, size_t alignment, size_t size) {
  if (pointer == nullptr) return;
  if (IsPowerOfTwo(alignment)) {
    DeallocateSizedAligned(pointer, size, alignment);
  } else {
    Deallocate(pointer);
  }
}

// The obsolete SunOS and glibc name of free.
MEMWARD_EXPORT void cfree(void* pointer) { free(pointer); }

// The aliases below lack the malloc and alloc_size attributes that glibc's
// headers put on their targets; the symbols are the same functions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-attributes"
// glibc's internal names, which some programs and libraries call directly.
MEMWARD_EXPORT void* __libc_malloc(size_t size) noexcept __attribute__((alias("malloc")));
MEMWARD_EXPORT void __libc_free(void* pointer) noexcept __attribute__((alias("free")));
MEMWARD_EXPORT void* __libc_calloc(size_t count, size_t size) noexcept __attribute__((alias("calloc")));
MEMWARD_EXPORT void* __libc_realloc(void* pointer, size_t size) noexcept __attribute__((alias("realloc")));
MEMWARD_EXPORT void* __libc_memalign(size_t alignment, size_t size)
    noexcept __attribute__((alias("memalign")));
MEMWARD_EXPORT void* __libc_valloc(size_t size) noexcept __attribute__((alias("valloc")));
MEMWARD_EXPORT void* __libc_pvalloc(size_t size) noexcept __attribute__((alias("pvalloc")));
MEMWARD_EXPORT int __posix_memalign(void** result, size_t alignment, size_t size)
    noexcept __attribute__((alias("posix_memalign")));

#pragma GCC diagnostic pop

}  // extern "C"

namespace memward::alloc {

void PrepareThread() {
  if (MEMWARD_UNLIKELY(t_thread_state.probe == 1)) t_thread_state.probe = 2;
  Bootstrap();
  StartThreadOnEngine();
  if (t_thread_state.slot == 0) UnparkSampleCountdown(t_thread_state);
}

}  // namespace memward::alloc

// This library's own malloc under a hidden name, so the C API can tell
// whether the process's malloc is memward's (accounting/c_api.cc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-attributes"
extern "C" __attribute__((visibility("hidden"))) void* memward_own_malloc(size_t size)
    __attribute__((alias("malloc")));
#pragma GCC diagnostic pop
