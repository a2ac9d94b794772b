// The chunk region: one reserved address range that the chunks of every
// arena memward creates are carved from.
//
// With all of memward's arenas in one range, free separates untagged
// memory (the automatic arenas') from memward's by comparing with the
// range's bounds (accounting/owner_map.h, OwnedRange), before it reads the
// owner map. The region is reserved on the first chunk request: the first of
// kRegionSizes that the kernel grants, with PROT_NONE and MAP_NORESERVE,
// which costs no memory and no commit charge. A chunk is committed by
// mapping it read-write in place.
//
// The reservation requests kRegionAddressHint, below the addresses that
// Linux picks by itself, so that untagged memory lies above the region and
// free tests it with one compare. Where the kernel does not grant the hint
// (the range is taken, or a sanitizer's runtime drops it), the region lies
// wherever mmap puts it, and a free below it takes a second compare. Under
// valgrind, which maps the program's memory at low addresses, every free
// takes both compares.
//
// When every reservation fails (a low RLIMIT_AS, say) or the region is full,
// chunks are mapped anywhere and the owned range is opened to the whole
// address space. free then reads the owner map for every pointer, as it did
// before the region existed.
//
// Thread safety: chunks are taken with a compare-and-swap on the region's
// next offset. One thread reserves the region while the others wait for it
// (RegionBase in alloc/chunk_region.cc).
#ifndef MEMWARD_ALLOC_CHUNK_REGION_H_
#define MEMWARD_ALLOC_CHUNK_REGION_H_

#include <stddef.h>
#include <stdint.h>

namespace memward::alloc {

// The region sizes tried, largest first: 64 GiB of address space for the
// arenas memward creates, which retain what they grow to, and smaller ones
// for hosts that limit address space (valgrind grants at most 32 GiB).
inline constexpr size_t kRegionSizes[] = {size_t{64} << 30, size_t{16} << 30, size_t{4} << 30};

// The address the region is reserved at when the kernel grants it: 8 TiB.
// On x86-64 Linux (checked on 6.18), mmap places mappings top-down from below
// the stack gap, near 128 TiB. With an unlimited stack rlimit they start
// near 21.3 TiB, because the kernel caps the gap at 5/6 of the 128 TiB
// address space. The legacy layout (setarch -L) places them upward from about
// 42.7 TiB, and PIE programs with their brk heap sit near 85 TiB. All of these
// are far above 8 TiB plus the largest region. A non-PIE program and its brk
// heap lie below it, near 4 MiB.
inline constexpr uintptr_t kRegionAddressHint = uintptr_t{8} << 40;

// Returns `size` bytes of committed, zeroed memory aligned to `alignment`
// (both multiples of the chunk size) from the region. Returns nullptr when
// the region is unavailable or full, and the caller then maps the chunks
// elsewhere and calls OpenOwnedRangeToAll first. Returns nullptr with
// `commit_failed` set when the kernel refused to commit the chunks, which a
// mapping elsewhere would meet too.
void* TakeRegionChunks(size_t size, size_t alignment, bool* commit_failed);

// Makes free look every pointer up in the owner map, for chunks mapped
// outside the region. Permanent.
void OpenOwnedRangeToAll();

// Returns whether OpenOwnedRangeToAll has run, so that every free reads the
// owner map.
bool OwnedRangeIsOpenToAll();

// Maps `size` bytes (a multiple of the page size) at an address aligned to
// `alignment`, a power of two of at least a page, with `protection` and
// `flags` (MAP_PRIVATE | MAP_ANONYMOUS and more), near `hint` if the kernel
// grants it. Returns nullptr on failure. Maps `size` + `alignment` and unmaps
// the parts around the aligned range.
void* MapAlignedRange(size_t size, size_t alignment, int protection, int flags,
                      void* hint = nullptr);

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_CHUNK_REGION_H_
