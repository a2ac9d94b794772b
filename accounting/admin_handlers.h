// Helpers shared by the admin server's own endpoint handlers
// (admin_stats.cc, admin_config.cc, metrics.cc). Internal to accounting/.
#ifndef MEMWARD_ACCOUNTING_ADMIN_HANDLERS_H_
#define MEMWARD_ACCOUNTING_ADMIN_HANDLERS_H_

#include <string>
#include <vector>

#include "alloc/scope.h"
#include "memward/memward.h"

namespace memward::accounting {

// Makes the calling thread's allocations memward's own while it lives, so
// that buffers built for an admin client are not charged to a user tenant.
class MemwardAllocationScope {
 public:
  MemwardAllocationScope();
  ~MemwardAllocationScope();
  MemwardAllocationScope(const MemwardAllocationScope&) = delete;
  MemwardAllocationScope& operator=(const MemwardAllocationScope&) = delete;

 private:
  alloc::SavedScope saved_{};
  bool entered_ = false;
};

void RegisterStatsEndpoints();
void RegisterConfigEndpoints();
void RegisterMetricsEndpoint();

// Returns every registered tenant's counters, the process and memward first.
// Reads atomics and jemalloc's statistics; takes no lock that malloc takes.
std::vector<memward_tenant_stats> ReadAllTenantStats();

// Returns memward_overhead_get's numbers, refreshed at most once a second:
// they count resident pages with mincore(2) over memward's tables, which
// took about a quarter of a /stats request's CPU time when read each time
// (perf, 2 vCPUs).
memward_overhead ReadOverheadAtMostOncePerSecond();

// Returns "normal", "soft", "high" or "critical", or "unknown" when the
// pressure ladder is not part of this build.
const char* CurrentPressureName();

// Appends memward's metrics in Prometheus text format (version 0.0.4).
void WriteMetricsText(std::string* out);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_ADMIN_HANDLERS_H_
