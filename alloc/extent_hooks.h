// Extent hooks for the arenas memward creates: jemalloc's defaults, except
// that new address space comes in whole, aligned 2 MiB chunks that are
// recorded in the owner map (accounting/owner_map.h), and that chunks are
// never unmapped while their arena lives.
#ifndef MEMWARD_ALLOC_EXTENT_HOOKS_H_
#define MEMWARD_ALLOC_EXTENT_HOOKS_H_

#include <stdint.h>

struct extent_hooks_s;

namespace memward::alloc {

// Returns the hook table to pass to "arenas.create", or nullptr if jemalloc's
// default hooks could not be read. Called under g_arena_lock.
extent_hooks_s* MemwardExtentHooks();

// Names the slot that the arena being created will get, so the hooks can
// record chunks that jemalloc maps during "arenas.create", before memward
// learns the arena's index. Called under g_arena_lock.
void SetSlotForNewArena(uint32_t slot);

// Records the slot of arena `arena_index` once it is known.
void SetSlotForArena(unsigned arena_index, uint32_t slot);

// Returns whether memward created arena `arena_index`.
bool IsMemwardArena(unsigned arena_index);

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_EXTENT_HOOKS_H_
