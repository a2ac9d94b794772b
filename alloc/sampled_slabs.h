// One long-lived block per small size class in the sampler's arena.
//
// A sampled block is served from the sampler's arena without a thread
// cache. When it was the only block in its slab, jemalloc released the slab
// at the block's free and created a new one at the next sample of that size
// class (about 2,100 instructions per sampled pair, callgrind). A pinned
// block keeps its class's slab alive, so a sampled pair reuses it.
//
// A class is pinned at its first sample, not at start-up: pinning all 36
// classes at start made every process about 250 KiB larger (rss_probe),
// most of it slabs of classes a small program never samples.
#ifndef MEMWARD_ALLOC_SAMPLED_SLABS_H_
#define MEMWARD_ALLOC_SAMPLED_SLABS_H_

#include <stddef.h>
#include <stdint.h>

namespace memward::alloc {

// Reads jemalloc's small size classes and remembers the arena of
// `arena_flag` (MALLOCX_ARENA). Called once, outside malloc, before the
// arena serves sampled blocks. Allocates nothing.
void PrepareSampledSlabs(int arena_flag);

// Pins the slab of the small class that serves `usable` bytes, unless it is
// pinned already or `usable` is past the small classes: allocates one block
// of the class, never freed, charged to memward's own tenant. Called on the
// sampler's slow path inside malloc; takes no lock (a race between two
// threads frees the loser's block).
void PinSlabOf(size_t usable);

struct PinnedSlabCounts {
  uint32_t blocks = 0;  // one per small size class sampled so far
  uint64_t bytes = 0;   // the pinned blocks' usable bytes
};

PinnedSlabCounts ReadPinnedSlabCounts();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_SAMPLED_SLABS_H_
