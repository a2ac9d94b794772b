// Fair shares and the critical level's reject set.
#include "accounting/pressure_admission.h"

#include <algorithm>

#include "accounting/tenant.h"
#include "accounting/tenant_registry.h"

namespace memward::accounting {
namespace {

struct Excess {
  TenantId id;
  uint64_t bytes;  // live bytes over the tenant's share
};

// Touched only by the warden thread; static because 4096 entries are too
// large for a comfortable stack frame.
constinit Excess g_excess[kMaxTenants];

uint64_t LiveBytes(const Tenant& tenant) {
  const int64_t live = tenant.counters.live_bytes.load(std::memory_order_relaxed);
  return live > 0 ? static_cast<uint64_t>(live) : 0;
}

}  // namespace

int UpdatePressureAdmission(PressureLevel level, uint64_t limit_bytes, uint64_t excess_bytes) {
  const TenantId count = TenantCount();
  uint64_t user_tenants = 0;
  for (TenantId id = kFirstUserTenant; id < count; id++) {
    if (IsRegistered(id)) user_tenants++;
  }
  SetFairShareBytes(user_tenants == 0 ? 0 : limit_bytes / user_tenants);

  if (level < PressureLevel::kCritical) {
    ClearRejectedUnderPressure();
    return 0;
  }

  int over = 0;
  for (TenantId id = kFirstUserTenant; id < count; id++) {
    if (!IsRegistered(id)) continue;
    const Tenant& tenant = TenantAt(id);
    const uint64_t share = ShareOf(tenant);
    const uint64_t live = LiveBytes(tenant);
    if (share != 0 && live > share) g_excess[over++] = Excess{id, live - share};
  }
  std::sort(g_excess, g_excess + over,
            [](const Excess& a, const Excess& b) { return a.bytes > b.bytes; });
  uint64_t words[kRejectWords] = {};
  uint64_t covered = 0;
  int marked = 0;
  for (int i = 0; i < over && (marked == 0 || covered < excess_bytes); i++) {
    words[g_excess[i].id / 64] |= uint64_t{1} << (g_excess[i].id % 64);
    covered += g_excess[i].bytes;
    marked++;
  }
  StoreRejectedUnderPressure(words);
  return marked;
}

}  // namespace memward::accounting
