// The reserved range behind TakeRegionChunks.
#include "alloc/chunk_region.h"

#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>

#include <atomic>

#include "accounting/owner_map.h"
#include "alloc/macros.h"

namespace memward::alloc {
namespace {

using accounting::g_owned_range;
using accounting::kChunkSize;

// 0 until the reservation is tried, kReserving while one thread tries it,
// then the region's base or kNoRegion.
constexpr uintptr_t kNoRegion = 1;
constexpr uintptr_t kReserving = 2;
constinit std::atomic<uintptr_t> g_region_base{0};
// Offset of the first chunk not handed out yet.
constinit std::atomic<uintptr_t> g_region_next{0};
// The size of the reserved region; written before g_region_base.
constinit uintptr_t g_region_bytes = 0;

uintptr_t RoundUp(uintptr_t value, uintptr_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

// Reserves the largest of kRegionSizes that the kernel grants and sets
// g_region_bytes. Returns the base, or kNoRegion.
uintptr_t Reserve() {
  for (size_t bytes : kRegionSizes) {
    void* base = MapAlignedRange(bytes, kChunkSize, PROT_NONE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                                 reinterpret_cast<void*>(kRegionAddressHint));
    if (base == nullptr) continue;
    g_region_bytes = bytes;
    return reinterpret_cast<uintptr_t>(base);
  }
  return kNoRegion;
}

// Returns the region's base or kNoRegion, reserving it on the first call.
// The owned range is published before the base, so that no chunk of the
// region reaches a program before free tests against the range. Other threads wait
// for the one that reserves: jemalloc calls the hook with the arena's grow
// mutex held, which the fork handler takes too, so no fork interrupts it.
uintptr_t RegionBase() {
  uintptr_t base = g_region_base.load(std::memory_order_acquire);
  if (MEMWARD_LIKELY(base > kReserving)) return base;
  if (base == 0 && g_region_base.compare_exchange_strong(base, kReserving,
                                                         std::memory_order_acq_rel)) {
    const uintptr_t reserved = Reserve();
    if (reserved != kNoRegion) {
      // Base before end: a reader that loads the new end also loads the new
      // base (accounting/owner_map.h).
      g_owned_range.base.store(reserved, std::memory_order_release);
      g_owned_range.end.store(reserved + g_region_bytes, std::memory_order_release);
    }
    g_region_base.store(reserved, std::memory_order_release);
    return reserved;
  }
  while ((base = g_region_base.load(std::memory_order_acquire)) == kReserving) sched_yield();
  return base;
}

// Takes the offset of `size` bytes aligned to `alignment`, or returns false
// when the region cannot hold them.
bool TakeOffset(size_t size, size_t alignment, uintptr_t base, uintptr_t* offset) {
  uintptr_t next = g_region_next.load(std::memory_order_relaxed);
  for (;;) {
    const uintptr_t start = RoundUp(base + next, alignment) - base;
    if (start > g_region_bytes || g_region_bytes - start < size) return false;
    if (g_region_next.compare_exchange_weak(next, start + size, std::memory_order_relaxed)) {
      *offset = start;
      return true;
    }
  }
}

}  // namespace

void* TakeRegionChunks(size_t size, size_t alignment, bool* commit_failed) {
  *commit_failed = false;
  const uintptr_t base = RegionBase();
  if (base == kNoRegion) return nullptr;
  uintptr_t offset = 0;
  if (!TakeOffset(size, alignment, base, &offset)) return nullptr;
  void* address = reinterpret_cast<void*>(base + offset);
  void* mapped = mmap(address, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  // NOTE: a failed commit (the kernel's commit limit, RLIMIT_DATA) leaves
  // this part of the region unused for good. The next request takes the
  // part after it.
  if (mapped == MAP_FAILED) {
    *commit_failed = true;
    return nullptr;
  }
  return mapped;
}

void* MapAlignedRange(size_t size, size_t alignment, int protection, int flags, void* hint) {
  const size_t padded = size + alignment;
  void* raw = mmap(hint, padded, protection, flags, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = RoundUp(reinterpret_cast<uintptr_t>(raw), alignment);
  const uintptr_t head = start - reinterpret_cast<uintptr_t>(raw);
  if (head != 0) munmap(raw, head);
  const size_t tail = padded - head - size;
  if (tail != 0) munmap(reinterpret_cast<void*>(start + size), tail);
  return reinterpret_cast<void*>(start);
}

bool OwnedRangeIsOpenToAll() {
  return g_owned_range.base.load(std::memory_order_acquire) == 0 &&
         g_owned_range.end.load(std::memory_order_acquire) == UINTPTR_MAX;
}

void OpenOwnedRangeToAll() {
  // End first: with the old base, every pointer at or above it is inside.
  g_owned_range.end.store(UINTPTR_MAX, std::memory_order_release);
  g_owned_range.base.store(0, std::memory_order_release);
}

}  // namespace memward::alloc
