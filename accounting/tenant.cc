// The tenant table and its counters.
#include "accounting/tenant.h"

#include "accounting/pressure_state.h"
#include "base/resident.h"

namespace memward::accounting {

// Zero-initialised storage: untouched entries cost no resident memory.
constinit Tenant g_tenants[kMaxTenants];

namespace {

void RaisePeak(std::atomic<int64_t>& peak, int64_t value) {
  int64_t current = peak.load(std::memory_order_relaxed);
  while (value > current &&
         !peak.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

size_t TenantTableResidentBytes() { return base::ResidentBytes(g_tenants, sizeof(g_tenants)); }

void PublishDelta(TenantCounters& counters, const TenantDelta& delta) {
  int64_t before = counters.live_bytes.fetch_add(delta.live, std::memory_order_relaxed);
  if (delta.allocated_bytes != 0) {
    counters.allocated_bytes.fetch_add(static_cast<uint64_t>(delta.allocated_bytes),
                                       std::memory_order_relaxed);
    RaisePeak(counters.peak_bytes, before + delta.peak_live);
  }
  if (int64_t freed = delta.FreedBytes(); freed != 0) {
    counters.freed_bytes.fetch_add(static_cast<uint64_t>(freed), std::memory_order_relaxed);
  }
  if (delta.allocations != 0) {
    counters.allocations.fetch_add(static_cast<uint64_t>(delta.allocations),
                                   std::memory_order_relaxed);
  }
  if (delta.frees != 0) {
    counters.frees.fetch_add(static_cast<uint64_t>(delta.frees), std::memory_order_relaxed);
  }
}

Admission Admit(TenantId id, uint64_t expected_bytes, int64_t extra_live,
                AdmissionReason* reason) {
  Tenant& tenant = g_tenants[id];
  int64_t live = tenant.counters.live_bytes.load(std::memory_order_relaxed) + extra_live;
  uint64_t projected = live > 0 ? static_cast<uint64_t>(live) : 0;
  if (__builtin_add_overflow(projected, expected_bytes, &projected)) projected = UINT64_MAX;
  uint64_t hard = tenant.hard_limit.load(std::memory_order_relaxed);
  uint64_t soft = tenant.soft_limit.load(std::memory_order_relaxed);
  Admission answer = Admission::kAdmit;
  *reason = AdmissionReason::kNone;
  if (hard != 0 && projected > hard) {
    answer = Admission::kReject;
    *reason = AdmissionReason::kHardLimit;
  } else if (soft != 0 && projected > soft) {
    answer = Admission::kShed;
    *reason = AdmissionReason::kSoftLimit;
  }
  if (answer != Admission::kReject) {
    const PressureLevel level = CurrentPressureLevel();
    const uint64_t share = ShareOf(tenant);
    if (level >= PressureLevel::kCritical && IsRejectedUnderPressure(id)) {
      answer = Admission::kReject;
      *reason = AdmissionReason::kPressure;
    } else if (level >= PressureLevel::kHigh && share != 0 && projected > share) {
      answer = Admission::kShed;
      *reason = AdmissionReason::kPressure;
    }
    if (*reason == AdmissionReason::kPressure) CountPressureAdmission(answer);
  }
  tenant.counters.admissions[static_cast<int>(answer)].fetch_add(1, std::memory_order_relaxed);
  return answer;
}

}  // namespace memward::accounting
