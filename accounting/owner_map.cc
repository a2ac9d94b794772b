// The flat chunk map behind OwnerSlotOf.
#include "accounting/owner_map.h"

#include <sys/mman.h>

namespace memward::accounting {

constinit std::atomic<uint16_t*> g_owner_map{nullptr};

bool EnsureOwnerMap() {
  if (g_owner_map.load(std::memory_order_acquire) != nullptr) return true;
  void* map = mmap(nullptr, kOwnerMapEntries * sizeof(uint16_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map == MAP_FAILED) return false;
  uint16_t* expected = nullptr;
  if (!g_owner_map.compare_exchange_strong(expected, static_cast<uint16_t*>(map),
                                           std::memory_order_acq_rel)) {
    munmap(map, kOwnerMapEntries * sizeof(uint16_t));
  }
  return true;
}

void RecordChunks(const void* address, size_t size, uint16_t slot) {
  uint16_t* map = g_owner_map.load(std::memory_order_acquire);
  uintptr_t first = reinterpret_cast<uintptr_t>(address) >> kLgChunkSize;
  uintptr_t count = size >> kLgChunkSize;
  for (uintptr_t i = 0; i < count; i++) {
    __atomic_store_n(&map[(first + i) & (kOwnerMapEntries - 1)], slot, __ATOMIC_RELAXED);
  }
}

}  // namespace memward::accounting
