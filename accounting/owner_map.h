// The address-to-owner map: which memward-created arena owns an address.
//
// memward's extent hooks (alloc/extent_hooks.cc) give each arena it creates
// whole 2 MiB chunks, aligned to 2 MiB, and record the arena's slot for every
// chunk here. A free then finds the owner with two loads: the map's base
// pointer and the chunk's entry. Entry 0 means "not a memward arena" (the
// automatic arenas of untagged memory). Chunks are never handed back to the
// kernel while their arena lives (jemalloc 5.3 retains address space), and
// memward never destroys an arena, so an entry never changes once written.
//
// The map is one flat array of uint16_t entries over the 47-bit user address
// space: 2^26 entries, 128 MiB of address space reserved with MAP_NORESERVE on
// the first tenant's set-up, of which only the pages for chunks in use are
// touched (one 4 KiB page of map covers 4 GiB of heap).
#ifndef MEMWARD_ACCOUNTING_OWNER_MAP_H_
#define MEMWARD_ACCOUNTING_OWNER_MAP_H_

#include <stddef.h>
#include <stdint.h>

#include <atomic>

namespace memward::accounting {

inline constexpr unsigned kLgChunkSize = 21;
inline constexpr size_t kChunkSize = size_t{1} << kLgChunkSize;
inline constexpr unsigned kLgAddressSpace = 47;
inline constexpr size_t kOwnerMapEntries = size_t{1} << (kLgAddressSpace - kLgChunkSize);

// Until the map is reserved, its mask is 0 and its entries point to a single
// zero entry, so the lookup needs no null check. The reservation
// stores the map before the mask (release), and the lookup loads the mask
// first (acquire), so a new mask never indexes the single entry.
struct OwnerMap {
  std::atomic<uintptr_t> mask;
  std::atomic<uint16_t*> entries;
};
// Hidden, so the free path reads it with one RIP-relative load per field.
extern OwnerMap g_owner_map __attribute__((visibility("hidden")));

// Returns the arena slot that owns `pointer`, or 0 (also for nullptr).
// Addresses above the 47-bit user space (possible only with 5-level paging
// and an explicit mmap hint) wrap around and are not supported.
//
// A process that never registered a tenant pays one load and one branch: the
// zero mask shows that no memward arena exists.
inline uint16_t OwnerSlotOf(const void* pointer) {
  uintptr_t mask = g_owner_map.mask.load(std::memory_order_acquire);
  if (__builtin_expect(mask == 0, 1)) return 0;
  uint16_t* entries = g_owner_map.entries.load(std::memory_order_relaxed);
  return entries[(reinterpret_cast<uintptr_t>(pointer) >> kLgChunkSize) & mask];
}

// Reserves the map. Returns false if the kernel refuses the reservation.
// Called outside malloc, before the first memward arena is created.
bool EnsureOwnerMap();

// Returns the resident bytes of the map.
size_t OwnerMapResidentBytes();

// Records `slot` as the owner of every chunk in [address, address + size);
// both are multiples of kChunkSize.
void RecordChunks(const void* address, size_t size, uint16_t slot);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_OWNER_MAP_H_
