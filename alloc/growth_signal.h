// The allocator's wake-up for the warden: counts heap growth seen on slow
// paths and calls a registered function once the growth since the warden
// last looked passes a threshold, so a fast ramp is seen between timer
// ticks.
//
// What is counted: every mmap that the embedded jemalloc makes
// (alloc/engine_shims.cc) and every extent memward's own arenas map
// (alloc/extent_hooks.cc). That is one relaxed atomic add per mmap, never
// on malloc's fast path.
//
// NOTE: it cannot see pages that are faulted in again inside mappings
// jemalloc keeps (with retain, purged extents stay mapped and are reused
// without an mmap), nor growth outside the allocator (thread stacks, file
// mappings). The warden's timer covers those.
#ifndef MEMWARD_ALLOC_GROWTH_SIGNAL_H_
#define MEMWARD_ALLOC_GROWTH_SIGNAL_H_

#include <stddef.h>
#include <stdint.h>

namespace memward::alloc {

using GrowthWakeFunction = void (*)();

// Sets the threshold in bytes (0 turns the wake-up off) and the function
// to call. `wake` must be safe inside malloc: no lock, no allocation.
void SetGrowthWake(uint64_t threshold_bytes, GrowthWakeFunction wake);

// Counts `bytes` of new mappings; calls the wake function at most once per
// threshold crossing until ResetGrowth.
void NoteHeapGrowth(size_t bytes);

// Called by the warden when it reads memory: restarts the count from 0.
void ResetGrowth();

// Bytes counted since the last reset; for tests.
uint64_t GrowthSinceReset();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_GROWTH_SIGNAL_H_
