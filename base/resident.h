// Resident memory of an address range, for memward's report of its own cost.
#ifndef MEMWARD_BASE_RESIDENT_H_
#define MEMWARD_BASE_RESIDENT_H_

#include <stddef.h>

namespace memward::base {

// Returns the bytes of [start, start + length) in pages that are resident,
// asking the kernel with mincore(2); 0 if it refuses.
size_t ResidentBytes(const void* start, size_t length);

}  // namespace memward::base

#endif  // MEMWARD_BASE_RESIDENT_H_
