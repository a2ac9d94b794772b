// Page tags: the size class of the blocks that start on a page of a memward
// arena, so that a free in the owning scope finds its bin without asking
// jemalloc. In a routed 64-byte malloc/free pair, mwje_sallocx took 39 of 190
// instructions (callgrind), and its call made the free save six registers.
//
// A tag is 0 ("ask jemalloc") or a SlotCache size class + 1
// (alloc/thread_cache.h). The owner map keeps one tag per 4 KiB page of each
// chunk (accounting/owner_map.h).
//
// Invariant: a page's tag is 0 or the size class of every live block that
// starts on the page. It holds because every block memward hands out from one
// of its arenas sets the tag of its first page before the program sees it:
// blocks taken for a SlotCache set their class, every other block (large,
// over-aligned, zeroed or resized) sets 0. The exported jemalloc API drops
// an arena flag that names a memward arena, so no block reaches the program
// from those arenas any other way.
// All live blocks that start on one page belong to one extent, so they share
// a size class, and a page comes to a new extent only after the blocks of the
// old one were freed, which happens after their tags were written.
// Concurrent writers of one tag therefore write values that are both valid.
#ifndef MEMWARD_ALLOC_PAGE_TAGS_H_
#define MEMWARD_ALLOC_PAGE_TAGS_H_

#include <stdint.h>

#include "accounting/owner_map.h"
#include "alloc/macros.h"

namespace memward::alloc {

// Tags `block` (owned, with owner map entry `entry`) as of class `size_class`.
MEMWARD_ALWAYS_INLINE void TagCachedBlock(uint32_t entry, const void* block, uint32_t size_class) {
  accounting::SetPageTag(entry, block, static_cast<uint8_t>(size_class + 1));
}

// Clears the tag of `block` if a memward arena owns it; for blocks handed
// out outside the SlotCaches.
MEMWARD_ALWAYS_INLINE void ClearBlockTag(const void* block) {
  uint32_t entry = accounting::OwnerEntryOf(block);
  if (entry != 0) accounting::SetPageTag(entry, block, 0);
}

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_PAGE_TAGS_H_
