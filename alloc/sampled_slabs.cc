// Pinned blocks of the sampler's arena.
#include "alloc/sampled_slabs.h"

#include <atomic>

#include "accounting/tenant.h"
#include "alloc/engine.h"

namespace memward::alloc {
namespace {

// jemalloc 5 has 36 small size classes with 4 KiB pages, more with larger
// pages; classes past this many are left unpinned.
constexpr uint32_t kMaxClasses = 64;

// Written once by PrepareSampledSlabs, before any sampled block exists.
constinit size_t g_class_size[kMaxClasses] = {};
constinit uint32_t g_class_count = 0;
constinit int g_arena_flag = 0;

// The pinned block of each class, kept so that it stays reachable.
constinit std::atomic<void*> g_pinned[kMaxClasses] = {};
constinit std::atomic<uint32_t> g_pinned_blocks{0};
constinit std::atomic<uint64_t> g_pinned_bytes{0};

// Returns the index of the smallest class of at least `usable` bytes, or
// g_class_count when there is none.
uint32_t ClassOf(size_t usable) {
  uint32_t low = 0;
  uint32_t high = g_class_count;
  while (low < high) {
    const uint32_t middle = (low + high) / 2;
    if (g_class_size[middle] < usable) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

}  // namespace

void PrepareSampledSlabs(int arena_flag) {
  if (g_class_count != 0) return;
  unsigned bins = 0;
  size_t length = sizeof(bins);
  if (mwje_mallctl("arenas.nbins", &bins, &length, nullptr, 0) != 0) return;
  // One lookup by name, then the bin index in the MIB: formatting each name
  // with snprintf faulted in 128 KiB of libc's printf code in every process.
  size_t mib[4];
  size_t mib_length = 4;
  if (mwje_mallctlnametomib("arenas.bin.0.size", mib, &mib_length) != 0) return;
  uint32_t count = 0;
  for (unsigned bin = 0; bin < bins && count < kMaxClasses; ++bin) {
    mib[2] = bin;
    size_t size = 0;
    length = sizeof(size);
    if (mwje_mallctlbymib(mib, mib_length, &size, &length, nullptr, 0) != 0) break;
    g_class_size[count++] = size;
  }
  g_arena_flag = arena_flag;
  g_class_count = count;
}

void PinSlabOf(size_t usable) {
  const uint32_t index = ClassOf(usable);
  if (index >= g_class_count || g_pinned[index].load(std::memory_order_relaxed) != nullptr) return;
  void* block = mwje_mallocx(g_class_size[index], g_arena_flag | kMallocxTcacheNone);
  if (block == nullptr) return;
  void* expected = nullptr;
  if (!g_pinned[index].compare_exchange_strong(expected, block, std::memory_order_relaxed)) {
    mwje_dallocx(block, kMallocxTcacheNone);
    return;
  }
  g_pinned_blocks.fetch_add(1, std::memory_order_relaxed);
  g_pinned_bytes.fetch_add(g_class_size[index], std::memory_order_relaxed);
  // memward's own tenant owns the block, so that the tenants' live bytes
  // still add up to what jemalloc reports for memward's arenas.
  accounting::TenantDelta delta;
  delta.AddAllocation(static_cast<int64_t>(g_class_size[index]));
  accounting::PublishDelta(accounting::TenantAt(accounting::kMemwardTenant).counters, delta);
}

PinnedSlabCounts ReadPinnedSlabCounts() {
  PinnedSlabCounts counts;
  counts.blocks = g_pinned_blocks.load(std::memory_order_relaxed);
  counts.bytes = g_pinned_bytes.load(std::memory_order_relaxed);
  return counts;
}

}  // namespace memward::alloc
