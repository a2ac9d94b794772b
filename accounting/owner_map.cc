// The flat chunk map behind OwnerSlotOf.
#include "accounting/owner_map.h"

#include <sys/mman.h>
#include <unistd.h>

#include "base/resident.h"

namespace memward::accounting {

namespace {

constinit uint32_t g_no_owner[1] = {0};
constinit std::atomic<uint32_t> g_next_chunk_number{1};

constexpr size_t kEntryBytes = kOwnerMapEntries * sizeof(uint32_t);
constexpr size_t kTagBytes = size_t{kMaxChunkNumbers} * kTagsPerChunk;

// Makes the pages that hold [begin, begin + length) writable. The map is
// reserved read-only, because a private writable mapping counts against
// RLIMIT_DATA whether or not it is touched, and 288 MiB of it would use up
// a data limit of that size. Returns false when mprotect fails (RLIMIT_DATA,
// or the kernel's limit on mappings).
bool MakeWritable(const void* begin, size_t length) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(begin) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(begin) + length + page - 1) & ~(page - 1);
  return mprotect(reinterpret_cast<void*>(start), end - start, PROT_READ | PROT_WRITE) == 0;
}

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
  void* map = mmap(nullptr, kEntryBytes + kTagBytes, PROT_READ,
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

bool RecordChunks(const void* address, size_t size, uint16_t slot) {
  uint32_t* map = g_owner_map.entries.load(std::memory_order_acquire);
  uint8_t* tags = g_owner_map.page_tags.load(std::memory_order_relaxed);
  const uintptr_t first = (reinterpret_cast<uintptr_t>(address) >> kLgChunkSize) &
                          (kOwnerMapEntries - 1);
  const uintptr_t count = size >> kLgChunkSize;
  // The indices wrap only above the 47-bit address space, which the map
  // does not support.
  if (!MakeWritable(&map[first], count * sizeof(uint32_t))) return false;
  for (uintptr_t i = 0; i < count; i++) {
    uint32_t number = TakeChunkNumber();
    if (number != 0 && !MakeWritable(tags + size_t{number} * kTagsPerChunk, kTagsPerChunk)) {
      number = 0;  // the chunk's page tags then read 0, as past the last number
    }
    __atomic_store_n(&map[(first + i) & (kOwnerMapEntries - 1)], (number << 16) | slot,
                     __ATOMIC_RELAXED);
  }
  return true;
}

}  // namespace memward::accounting
