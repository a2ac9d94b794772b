// The pressure state shared between the warden thread and admission.
#include "accounting/pressure_state.h"

namespace memward::accounting {
namespace {

constinit std::atomic<uint8_t> g_level{0};
constinit std::atomic<uint64_t> g_fair_share_bytes{0};
constinit std::atomic<uint64_t> g_pressure_shed{0};
constinit std::atomic<uint64_t> g_pressure_rejected{0};
// Bit `id % 64` of word `id / 64` is set while tenant `id` is rejected at
// the critical level.
constinit std::atomic<uint64_t> g_rejected[kRejectWords] = {};

}  // namespace

const char* PressureLevelName(PressureLevel level) {
  switch (level) {
    case PressureLevel::kNormal: return "normal";
    case PressureLevel::kSoft: return "soft";
    case PressureLevel::kHigh: return "high";
    case PressureLevel::kCritical: return "critical";
  }
  return "unknown";
}

PressureLevel CurrentPressureLevel() {
  return static_cast<PressureLevel>(g_level.load(std::memory_order_relaxed));
}

void SetCurrentPressureLevel(PressureLevel level) {
  g_level.store(static_cast<uint8_t>(level), std::memory_order_relaxed);
}

uint64_t FairShareBytes() { return g_fair_share_bytes.load(std::memory_order_relaxed); }

void SetFairShareBytes(uint64_t bytes) {
  g_fair_share_bytes.store(bytes, std::memory_order_relaxed);
}

void StoreRejectedUnderPressure(const uint64_t (&words)[kRejectWords]) {
  for (int i = 0; i < kRejectWords; i++) g_rejected[i].store(words[i], std::memory_order_relaxed);
}

bool IsRejectedUnderPressure(TenantId id) {
  if (id >= kMaxTenants) return false;
  return (g_rejected[id / 64].load(std::memory_order_relaxed) >> (id % 64)) & 1;
}

void ClearRejectedUnderPressure() {
  for (std::atomic<uint64_t>& word : g_rejected) word.store(0, std::memory_order_relaxed);
}

void CountPressureAdmission(Admission answer) {
  if (answer == Admission::kShed) g_pressure_shed.fetch_add(1, std::memory_order_relaxed);
  if (answer == Admission::kReject) g_pressure_rejected.fetch_add(1, std::memory_order_relaxed);
}

uint64_t PressureShedCount() { return g_pressure_shed.load(std::memory_order_relaxed); }
uint64_t PressureRejectCount() { return g_pressure_rejected.load(std::memory_order_relaxed); }

uint64_t ShareOf(const Tenant& tenant) {
  uint64_t soft = tenant.soft_limit.load(std::memory_order_relaxed);
  return soft != 0 ? soft : FairShareBytes();
}

}  // namespace memward::accounting
