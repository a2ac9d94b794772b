// jemalloc's non-standard API, exported by memward so that a program built
// against jemalloc (Debian's redis-server links libjemalloc.so.2) allocates
// from memward's heap instead of starting a second one.
//
// These follow jemalloc 5.3's documented contracts, including their undefined
// cases (mallocx with size 0); allocating calls pass the same thread entry as
// malloc, so bootstrap and routing apply to them too.
#include <stddef.h>

#include "alloc/allocator.h"
#include "alloc/macros.h"

using namespace memward::alloc;

extern "C" {

MEMWARD_EXPORT void* mallocx(size_t size, int flags) {
  EnterAllocation();
  return mwje_mallocx(size, flags);
}

MEMWARD_EXPORT void* rallocx(void* pointer, size_t size, int flags) {
  EnterAllocation();
  return mwje_rallocx(pointer, size, flags);
}

MEMWARD_EXPORT size_t xallocx(void* pointer, size_t size, size_t extra, int flags) {
  EnterAllocation();
  return mwje_xallocx(pointer, size, extra, flags);
}

MEMWARD_EXPORT size_t sallocx(const void* pointer, int flags) {
  return mwje_sallocx(pointer, flags);
}

MEMWARD_EXPORT void dallocx(void* pointer, int flags) { mwje_dallocx(pointer, flags); }

MEMWARD_EXPORT void sdallocx(void* pointer, size_t size, int flags) {
  mwje_sdallocx(pointer, size, flags);
}

MEMWARD_EXPORT size_t nallocx(size_t size, int flags) {
  EnterAllocation();
  return mwje_nallocx(size, flags);
}

MEMWARD_EXPORT int mallctl(const char* name, void* old_value, size_t* old_length, void* new_value,
                           size_t new_length) {
  EnterAllocation();
  return mwje_mallctl(name, old_value, old_length, new_value, new_length);
}

MEMWARD_EXPORT int mallctlnametomib(const char* name, size_t* mib, size_t* mib_length) {
  EnterAllocation();
  return mwje_mallctlnametomib(name, mib, mib_length);
}

MEMWARD_EXPORT int mallctlbymib(const size_t* mib, size_t mib_length, void* old_value,
                                size_t* old_length, void* new_value, size_t new_length) {
  EnterAllocation();
  return mwje_mallctlbymib(mib, mib_length, old_value, old_length, new_value, new_length);
}

MEMWARD_EXPORT void malloc_stats_print(void (*write)(void*, const char*), void* context,
                                       const char* options) {
  EnterAllocation();
  mwje_malloc_stats_print(write, context, options);
}

}  // extern "C"
