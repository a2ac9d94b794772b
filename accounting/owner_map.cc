// The flat chunk map behind OwnerSlotOf.
#include "accounting/owner_map.h"

#include <sys/mman.h>

#include "base/resident.h"

namespace memward::accounting {

namespace {

constinit uint16_t g_no_owner[1] = {0};

}  // namespace

constinit OwnerMap g_owner_map{{0}, {g_no_owner}};

// Called under the arena lock (alloc/arena_registry.cc), so only one thread
// reserves the map.
bool EnsureOwnerMap() {
  if (g_owner_map.mask.load(std::memory_order_acquire) != 0) return true;
  void* map = mmap(nullptr, kOwnerMapEntries * sizeof(uint16_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map == MAP_FAILED) return false;
  g_owner_map.entries.store(static_cast<uint16_t*>(map), std::memory_order_relaxed);
  g_owner_map.mask.store(kOwnerMapEntries - 1, std::memory_order_release);
  return true;
}

size_t OwnerMapResidentBytes() {
  if (g_owner_map.mask.load(std::memory_order_acquire) == 0) return 0;
  return base::ResidentBytes(g_owner_map.entries.load(std::memory_order_relaxed),
                             kOwnerMapEntries * sizeof(uint16_t));
}

void RecordChunks(const void* address, size_t size, uint16_t slot) {
  uint16_t* map = g_owner_map.entries.load(std::memory_order_acquire);
  uintptr_t first = reinterpret_cast<uintptr_t>(address) >> kLgChunkSize;
  uintptr_t count = size >> kLgChunkSize;
  for (uintptr_t i = 0; i < count; i++) {
    __atomic_store_n(&map[(first + i) & (kOwnerMapEntries - 1)], slot, __ATOMIC_RELAXED);
  }
}

}  // namespace memward::accounting
