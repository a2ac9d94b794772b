// glibc's malloc_trim and mallinfo/mallinfo2, filled from jemalloc's
// statistics. The __libc_* names are aliases in malloc_api.cc.
#include <limits.h>
#include <malloc.h>
#include <stddef.h>

#include "alloc/allocator.h"
#include "alloc/macros.h"
#include "alloc/purge.h"

using namespace memward::alloc;

extern "C" {

// Flushes the calling thread's cache and purges every arena's unused pages.
// `pad` is ignored: jemalloc keeps no top-of-heap slack to spare. Returns 1
// when pages went back to the kernel, as glibc does.
MEMWARD_EXPORT int malloc_trim(size_t pad) {
  EnterAllocation();
  return PurgeUnusedPages() > 0 ? 1 : 0;
}

// glibc's fields mean glibc's heap layout; memward fills them as follows:
//   arena    bytes mapped by the allocator (stats.mapped)
//   ordblks  1 (jemalloc has no free-chunk list to count)
//   uordblks bytes allocated to the program (stats.allocated)
//   fordblks bytes mapped but not allocated (mapped - allocated)
//   keepcost bytes in unused dirty pages, which malloc_trim would release
//   hblkhd   bytes retained as virtual memory but not mapped (stats.retained)
//   the other fields are 0.
MEMWARD_EXPORT struct mallinfo2 mallinfo2(void) {
  EnterAllocation();
  HeapStatistics stats = ReadHeapStatistics();
  struct mallinfo2 info = {};
  info.arena = stats.mapped;
  info.ordblks = 1;
  info.uordblks = stats.allocated;
  info.fordblks = stats.mapped > stats.allocated ? stats.mapped - stats.allocated : 0;
  info.keepcost = stats.dirty;
  info.hblkhd = stats.retained;
  return info;
}

// The int fields of mallinfo saturate at INT_MAX instead of wrapping.
MEMWARD_EXPORT struct mallinfo mallinfo(void) {
  struct mallinfo2 wide = mallinfo2();
  auto narrow = [](size_t value) { return value > INT_MAX ? INT_MAX : static_cast<int>(value); };
  struct mallinfo info = {};
  info.arena = narrow(wide.arena);
  info.ordblks = narrow(wide.ordblks);
  info.uordblks = narrow(wide.uordblks);
  info.fordblks = narrow(wide.fordblks);
  info.keepcost = narrow(wide.keepcost);
  info.hblkhd = narrow(wide.hblkhd);
  return info;
}

}  // extern "C"
