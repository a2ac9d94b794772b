// A bound on the dirty pages that jemalloc's arenas keep, checked after
// large allocations instead of left to decay alone.
//
// jemalloc 5.3 purges dirty pages by age (dirty_decay), on ticks that come
// about once per 1,000 allocations and frees in an arena. A program that
// allocates few but large blocks makes few ticks, so its freed blocks stay
// resident. A loop of 5 to 25 MiB blocks with two alive at a time
// (bench/workloads/large_blocks.cc) reached 150 MiB of peak RSS for at most
// 50 MiB of live blocks. jemalloc's own remedy, the huge arena that purges
// each such block at its free, is off in memward (oversize_threshold,
// alloc/bootstrap.cc), because faulting every block in again made that loop
// six times slower than glibc.
//
// Every allocation of 4 MiB or more, and most from 1 MiB, reaches the
// sampler's slow path (alloc/sampling.h feeds the countdown at most 4 MiB at a
// time). That path reports those of at least kLargeAllocationBytes here. After
// each quarter of the `dirty_max_bytes` setting so allocated, the next such
// allocation reads the dirty and muzzy bytes of all arenas and, if they exceed
// the setting, purges every arena. The check runs after the allocation, so
// the new block has already reused the dirty pages that fit it.
#ifndef MEMWARD_ALLOC_DIRTY_BOUND_H_
#define MEMWARD_ALLOC_DIRTY_BOUND_H_

#include <stddef.h>

#include "alloc/macros.h"

namespace memward::alloc {

// Allocations of at least this many bytes count towards the next check.
inline constexpr size_t kLargeAllocationBytes = size_t{1} << 20;

// Counts a successful allocation of `size` bytes (at least
// kLargeAllocationBytes) and runs the check when its turn has come. Called on
// the sampler's slow path, outside jemalloc. The check takes jemalloc's
// statistics and purge locks through mallctl (refreshing the statistics costs
// about 9 us per arena) and, when it purges, makes one madvise call per dirty
// extent. One thread checks at a time, and the others skip the check instead
// of waiting.
MEMWARD_NOINLINE void NoteLargeAllocation(size_t size);

// Clears the flag of a check that another thread of the parent was running
// at fork, which would otherwise stop every check in the child.
void ResetDirtyBoundInChild();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_DIRTY_BOUND_H_
