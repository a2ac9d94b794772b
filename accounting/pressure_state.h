// The memory pressure state that admission reads: the ladder's level, each
// tenant's share of the container's memory and the tenants whose new work is
// rejected at the critical level.
//
// The warden thread writes it (accounting/pressure_service.cc) and any
// thread reads it with relaxed atomics, so memward_admit pays a few loads.
// This file belongs to the accounting core: it includes no service.
#ifndef MEMWARD_ACCOUNTING_PRESSURE_STATE_H_
#define MEMWARD_ACCOUNTING_PRESSURE_STATE_H_

#include <stdint.h>

#include <atomic>

#include "accounting/tenant.h"

namespace memward::accounting {

// In order of severity; the values are memward_pressure_level's.
enum class PressureLevel : uint8_t { kNormal = 0, kSoft = 1, kHigh = 2, kCritical = 3 };
inline constexpr int kNumPressureLevels = 4;

const char* PressureLevelName(PressureLevel level);

PressureLevel CurrentPressureLevel();
void SetCurrentPressureLevel(PressureLevel level);

// The bytes a tenant without a soft limit may hold before admission under
// pressure treats it as over its share; 0 when not computed yet.
uint64_t FairShareBytes();
void SetFairShareBytes(uint64_t bytes);

// The tenants furthest over their share, whose new work is rejected at the
// critical level: bit `id % 64` of word `id / 64`.
inline constexpr int kRejectWords = kMaxTenants / 64;
// Replaces the whole set, word by word, so a tenant that stays in it is
// never seen outside it by a concurrent admission.
void StoreRejectedUnderPressure(const uint64_t (&words)[kRejectWords]);
bool IsRejectedUnderPressure(TenantId id);
void ClearRejectedUnderPressure();

// Counts of admissions that returned shed or reject for pressure.
void CountPressureAdmission(Admission answer);
uint64_t PressureShedCount();
uint64_t PressureRejectCount();

// Returns the share of `tenant`: its soft limit when it has one, else the
// fair share (0: no share known).
uint64_t ShareOf(const Tenant& tenant);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PRESSURE_STATE_H_
