// The slow allocation paths: allocations inside a tenant or request scope,
// frees of memory that a memward arena owns, and their accounting.
//
// Charged size is the usable size (jemalloc's size class) of the block, so
// memward's totals and jemalloc's statistics are the same numbers.
#ifndef MEMWARD_ALLOC_ROUTING_H_
#define MEMWARD_ALLOC_ROUTING_H_

#include <stddef.h>
#include <stdint.h>

#include "alloc/macros.h"
#include "alloc/thread_state.h"

namespace memward::alloc {

// Allocates `size` bytes for the calling thread's scope: from the scope's
// arena and counted for its tenant and request, or from the automatic arenas
// outside any scope. `alignment` is 0 for malloc's natural alignment or a
// power of two. Returns nullptr with errno set to ENOMEM on failure,
// including a refusal by an enforced hard limit.
MEMWARD_NOINLINE void* AllocateSlow(size_t size, size_t alignment, bool zero);

// AllocateSlow for malloc: serves a small request from the thread's SlotCache
// without saving registers, and passes everything else to AllocateSlow.
MEMWARD_NOINLINE void* AllocateSlowMalloc(size_t size);

// Frees `pointer`, which the arena in `slot` owns, crediting its owner.
MEMWARD_NOINLINE void FreeOwned(void* pointer, uint16_t slot) noexcept;

// FreeOwned for a caller that has the owner map's whole `entry` (not 0): a
// block of the thread's own scope goes to its bin by its page tag
// (alloc/page_tags.h) without asking jemalloc for its size.
MEMWARD_NOINLINE void FreeOwnedEntry(void* pointer, uint32_t entry) noexcept;

// FreeOwned for a caller that passes the requested size (sized delete,
// free_sized, sdallocx): the size class comes from a table instead of
// jemalloc's lookup.
MEMWARD_NOINLINE void FreeOwnedSized(void* pointer, uint16_t slot, size_t size) noexcept;

// Resizes `pointer` (not null) to `size` (not 0) when the thread is in a
// scope or the pointer belongs to a memward arena (`slot`, or 0).
MEMWARD_NOINLINE void* ReallocateSlow(void* pointer, size_t size, uint16_t slot);

// Returns the usable size of `pointer`, which the arena in `slot` owns.
MEMWARD_NOINLINE size_t UsableSizeOwned(const void* pointer, uint16_t slot);

// Publishes a thread's batch to its tenant (and request) and clears it.
void PublishThreadBatch(ThreadState& state);

// Publishes the batch and leaves the thread's scope for good: its later
// allocations are untagged, and its later frees credit their owners at once.
void DetachFromScope(ThreadState& state);

// Memory for memward's own bookkeeping, from its own arena without a thread
// cache, counted for the memward tenant. Called outside malloc. With `zero`,
// the block is zeroed, and fresh pages are left untouched (not resident).
void* AllocateMemwardBlock(size_t size, bool zero = false);
void FreeMemwardBlock(void* block, size_t size);

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_ROUTING_H_
