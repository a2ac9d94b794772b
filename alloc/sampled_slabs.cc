// Pinned blocks of the sampler's arena.
#include "alloc/sampled_slabs.h"

#include <stdio.h>

#include "accounting/tenant.h"
#include "alloc/engine.h"

namespace memward::alloc {
namespace {

// jemalloc 5 has 36 small size classes with 4 KiB pages, more with larger
// pages; classes past this many are left unpinned.
constexpr uint32_t kMaxPinned = 64;

// Kept so that the blocks stay reachable; written once under the
// sampler's control lock.
constinit void* g_pinned[kMaxPinned] = {};
constinit PinnedSlabCounts g_counts;

}  // namespace

void PinSampledSlabs(int arena_flag) {
  if (g_counts.blocks != 0) return;
  unsigned bins = 0;
  size_t length = sizeof(bins);
  if (mwje_mallctl("arenas.nbins", &bins, &length, nullptr, 0) != 0) return;
  for (unsigned bin = 0; bin < bins && g_counts.blocks < kMaxPinned; ++bin) {
    char name[48];
    snprintf(name, sizeof(name), "arenas.bin.%u.size", bin);
    size_t size = 0;
    length = sizeof(size);
    if (mwje_mallctl(name, &size, &length, nullptr, 0) != 0) continue;
    void* block = mwje_mallocx(size, arena_flag | kMallocxTcacheNone);
    if (block == nullptr) continue;
    g_pinned[g_counts.blocks++] = block;
    g_counts.bytes += size;
  }
  // memward's own tenant owns the blocks, so that the tenants' live bytes
  // still add up to what jemalloc reports for memward's arenas.
  accounting::TenantDelta delta;
  delta.AddAllocation(static_cast<int64_t>(g_counts.bytes));
  accounting::PublishDelta(accounting::TenantAt(accounting::kMemwardTenant).counters, delta);
}

PinnedSlabCounts ReadPinnedSlabCounts() { return g_counts; }

}  // namespace memward::alloc
