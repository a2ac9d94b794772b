// One long-lived block per small size class in the sampler's arena.
//
// A sampled block is served from the sampler's arena without a thread
// cache. When it was the only block in its slab, jemalloc released the slab
// at the block's free and created a new one at the next sample of that size
// class (about 2,100 instructions per sampled pair, callgrind). A pinned
// block keeps each small class's slab alive, so a sampled pair reuses it.
#ifndef MEMWARD_ALLOC_SAMPLED_SLABS_H_
#define MEMWARD_ALLOC_SAMPLED_SLABS_H_

#include <stddef.h>
#include <stdint.h>

namespace memward::alloc {

// Allocates, once per process, one block of each of jemalloc's small size
// classes in the arena of `arena_flag` (MALLOCX_ARENA), never freed, and
// charges them to memward's own tenant.
// Called outside malloc, before the arena serves sampled blocks, so that
// no pinned block is taken for a sampled one.
void PinSampledSlabs(int arena_flag);

struct PinnedSlabCounts {
  uint32_t blocks = 0;  // one per small size class
  uint64_t bytes = 0;   // the pinned blocks' usable bytes
};

PinnedSlabCounts ReadPinnedSlabCounts();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_SAMPLED_SLABS_H_
