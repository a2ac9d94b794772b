// The dirty-page bound checked after large allocations.
#include "alloc/dirty_bound.h"

#include <stdint.h>

#include <atomic>

#include "alloc/bootstrap.h"
#include "alloc/purge.h"
#include "base/settings.h"

namespace memward::alloc {
namespace {

// The check runs after each quarter of the bound allocated in large blocks.
// A program frees about as much as it allocates, so dirty pages can grow by
// about a quarter of the bound between two checks (an estimate: one large
// free can exceed it).
constexpr uint64_t kChecksPerBound = 4;

// Bytes of large allocations since the last check. The thread that runs the
// check resets it, which can drop bytes that other threads count meanwhile.
// They only delay the next check.
constinit std::atomic<uint64_t> g_large_bytes{0};
// Set while one thread runs the check.
constinit std::atomic<bool> g_checking{false};

}  // namespace

void NoteLargeAllocation(size_t size) {
  const int64_t bound = CurrentSettings().Get(base::SettingId::kDirtyMaxBytes);
  if (bound == 0) return;
  const uint64_t total = g_large_bytes.fetch_add(size, std::memory_order_relaxed) + size;
  if (total < static_cast<uint64_t>(bound) / kChecksPerBound) return;
  if (g_checking.exchange(true, std::memory_order_acquire)) return;
  g_large_bytes.store(0, std::memory_order_relaxed);
  if (ReadUnusedPageBytes() > static_cast<size_t>(bound)) PurgeEveryArena();
  g_checking.store(false, std::memory_order_release);
}

void ResetDirtyBoundInChild() { g_checking.store(false, std::memory_order_relaxed); }

}  // namespace memward::alloc
