// The allocator's wake-up for the warden: counts heap growth seen on slow
// paths and calls a registered function once the growth since the warden
// last looked passes a threshold, so a fast ramp is seen between timer
// ticks.
//
// Three slow paths count: every mmap that the embedded jemalloc makes
// (alloc/engine_shims.cc), every extent that memward's own arenas map
// (alloc/extent_hooks.cc), and the net growth of each tenant batch that a
// thread publishes (alloc/routing.cc, about every 1 MiB of scoped
// allocation). Each costs one relaxed atomic add, and malloc's fast path is
// untouched.
//
// NOTE: untagged memory that reuses pages jemalloc keeps mapped (with
// retain, purged extents stay mapped and are reused without an mmap) is not
// seen, nor is growth outside the allocator (thread stacks, file mappings).
// The warden's timer covers those.
#ifndef MEMWARD_ALLOC_GROWTH_SIGNAL_H_
#define MEMWARD_ALLOC_GROWTH_SIGNAL_H_

#include <stddef.h>
#include <stdint.h>

namespace memward::alloc {

using GrowthWakeFunction = void (*)();

// Sets the threshold in bytes (0 turns the wake-up off) and the function
// to call. `wake` must be safe inside malloc: no lock, no allocation. The
// warden lowers the threshold as the working set nears the next level.
void SetGrowthWake(uint64_t threshold_bytes, GrowthWakeFunction wake);

// Counts `bytes` of heap growth. The call that takes the count past the
// threshold calls the wake function; later calls do not until ResetGrowth.
void NoteHeapGrowth(size_t bytes);

// Called by the warden when it reads memory: restarts the count from 0.
void ResetGrowth();

// Bytes counted since the last reset; for tests.
uint64_t GrowthSinceReset();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_GROWTH_SIGNAL_H_
