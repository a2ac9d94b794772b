// The flat chunk map behind OwnerSlotOf.
#include "accounting/owner_map.h"

#include <sys/mman.h>

#include "base/resident.h"

namespace memward::accounting {

namespace {

constinit uint32_t g_no_owner[1] = {0};
constinit std::atomic<uint32_t> g_next_chunk_number{1};

constexpr size_t kEntryBytes = kOwnerMapEntries * sizeof(uint32_t);
constexpr size_t kTagBytes = size_t{kMaxChunkNumbers} * kTagsPerChunk;

// Returns the next chunk number, or 0 once every number is taken.
uint32_t TakeChunkNumber() {
  uint32_t number = g_next_chunk_number.load(std::memory_order_relaxed);
  while (number < kMaxChunkNumbers) {
    if (g_next_chunk_number.compare_exchange_weak(number, number + 1,
                                                  std::memory_order_relaxed)) {
      return number;
    }
  }
  return 0;
}

}  // namespace

constinit OwnerMap g_owner_map{{0}, {g_no_owner}, {nullptr}};
constinit OwnedRange g_owned_range{{UINTPTR_MAX}, {1}};

// Called under the arena lock (alloc/arena_registry.cc), so only one thread
// reserves the map.
bool EnsureOwnerMap() {
  if (g_owner_map.mask.load(std::memory_order_acquire) != 0) return true;
  void* map = mmap(nullptr, kEntryBytes + kTagBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map == MAP_FAILED) return false;
  g_owner_map.page_tags.store(static_cast<uint8_t*>(map) + kEntryBytes, std::memory_order_relaxed);
  g_owner_map.entries.store(static_cast<uint32_t*>(map), std::memory_order_relaxed);
  g_owner_map.mask.store(kOwnerMapEntries - 1, std::memory_order_release);
  return true;
}

size_t OwnerMapResidentBytes() {
  if (g_owner_map.mask.load(std::memory_order_acquire) == 0) return 0;
  return base::ResidentBytes(g_owner_map.entries.load(std::memory_order_relaxed),
                             kEntryBytes + kTagBytes);
}

void RecordChunks(const void* address, size_t size, uint16_t slot) {
  uint32_t* map = g_owner_map.entries.load(std::memory_order_acquire);
  uintptr_t first = reinterpret_cast<uintptr_t>(address) >> kLgChunkSize;
  uintptr_t count = size >> kLgChunkSize;
  for (uintptr_t i = 0; i < count; i++) {
    uint32_t entry = (TakeChunkNumber() << 16) | slot;
    __atomic_store_n(&map[(first + i) & (kOwnerMapEntries - 1)], entry, __ATOMIC_RELAXED);
  }
}

}  // namespace memward::accounting
