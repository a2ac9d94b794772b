// Heap growth counting for the warden's wake-up.
#include "alloc/growth_signal.h"

#include <atomic>

namespace memward::alloc {
namespace {

constinit std::atomic<uint64_t> g_threshold{0};
constinit std::atomic<GrowthWakeFunction> g_wake{nullptr};
constinit std::atomic<uint64_t> g_growth{0};
// Set by the call that crosses the threshold, cleared by ResetGrowth, so a
// burst of mappings wakes the warden once.
constinit std::atomic<bool> g_wake_sent{false};

}  // namespace

void SetGrowthWake(uint64_t threshold_bytes, GrowthWakeFunction wake) {
  g_wake.store(wake, std::memory_order_release);
  g_threshold.store(threshold_bytes, std::memory_order_release);
}

void NoteHeapGrowth(size_t bytes) {
  const uint64_t threshold = g_threshold.load(std::memory_order_relaxed);
  if (threshold == 0) return;
  const uint64_t growth = g_growth.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (growth < threshold || g_wake_sent.load(std::memory_order_relaxed)) return;
  if (g_wake_sent.exchange(true, std::memory_order_acq_rel)) return;
  GrowthWakeFunction wake = g_wake.load(std::memory_order_acquire);
  if (wake != nullptr) wake();
}

void ResetGrowth() {
  g_growth.store(0, std::memory_order_relaxed);
  g_wake_sent.store(false, std::memory_order_release);
}

uint64_t GrowthSinceReset() { return g_growth.load(std::memory_order_relaxed); }

}  // namespace memward::alloc
