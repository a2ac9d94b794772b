// mincore(2) over a range, a bounded number of pages at a time.
#include "base/resident.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

namespace memward::base {

size_t ResidentBytes(const void* start, size_t length) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = reinterpret_cast<uintptr_t>(start) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(start) + length + page - 1) & ~(page - 1);
  constexpr size_t kPagesPerCall = 4096;
  unsigned char vector[kPagesPerCall];
  size_t resident = 0;
  while (begin < end) {
    size_t pages = (end - begin) / page;
    if (pages > kPagesPerCall) pages = kPagesPerCall;
    if (mincore(reinterpret_cast<void*>(begin), pages * page, vector) != 0) return 0;
    for (size_t i = 0; i < pages; i++) resident += (vector[i] & 1) != 0 ? page : 0;
    begin += pages * page;
  }
  return resident;
}

}  // namespace memward::base
