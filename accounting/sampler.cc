// Start-up and run-time control of the sampler, and its statistics.
#include "accounting/sampler.h"

#include <pthread.h>

#include "accounting/cached_unwinder.h"
#include "accounting/sample_table.h"
#include "accounting/stack_capture.h"
#include "accounting/unwinder_memory.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/sampled_slabs.h"
#include "alloc/sampling.h"
#include "base/log.h"
#include "base/settings.h"

namespace memward::accounting {
namespace {

// Serialises set-up and interval changes; never taken inside malloc, and
// taken before the arena lock (alloc/arena_registry.h), never after it.
constinit pthread_mutex_t g_control_lock = PTHREAD_MUTEX_INITIALIZER;

// Returns the unwinder that the settings select; an unknown
// sample_unwinder name is logged and the default is used.
Unwinder SelectedUnwinder(const base::Settings& settings) {
  if (settings.GetBool(base::SettingId::kSampleFramePointers)) return Unwinder::kFramePointers;
  const char* name = settings.GetText(base::SettingId::kSampleUnwinder);
  Unwinder unwinder = Unwinder::kCached;
  if (!ParseUnwinder(name, unwinder)) {
    base::Log("sampling: invalid sample_unwinder '%s' (expected cached, libunwind or "
              "frame_pointers); using cached",
              name);
    unwinder = Unwinder::kCached;
  }
  return unwinder;
}

// Creates the table, the arena and the unwinder on first use. REQUIRES
// g_control_lock.
bool SetUpSampler() {
  static bool set_up = false;
  if (set_up) return true;
  const base::Settings& settings = alloc::CurrentSettings();
  if (!CreateSampleTable(settings.Get(base::SettingId::kSampleMaxEntries),
                         settings.Get(base::SettingId::kSampleMaxBytes))) {
    base::Log("sampling: could not allocate the sample table (sample_max_bytes=%lld); "
              "sampling stays off",
              static_cast<long long>(settings.Get(base::SettingId::kSampleMaxBytes)));
    return false;
  }
  uint32_t slot = alloc::SampledArenaSlot();
  if (slot == 0) {
    base::Log("sampling: could not create the sampler's arena; sampling stays off");
    return false;
  }
  alloc::PrepareSampledSlabs(alloc::SlotAt(slot).arena_flag);
  SetFrameTablesFromFile(settings.GetBool(base::SettingId::kSampleTablesFromFile));
  LoadUnwinder(SelectedUnwinder(settings),
               static_cast<uint64_t>(settings.Get(base::SettingId::kSampleUnwinderMaxBytes)));
  alloc::ConfigureSampling(0, slot);
  set_up = true;
  return true;
}

}  // namespace

bool SetSampleInterval(int64_t bytes) {
  const base::SettingSpec& spec =
      base::kSettingSpecs[static_cast<int>(base::SettingId::kSampleInterval)];
  if (bytes < spec.min_value || bytes > spec.max_value) return false;
  pthread_mutex_lock(&g_control_lock);
  bool ready = bytes == 0 || SetUpSampler();
  if (ready) alloc::ConfigureSampling(bytes, 0);
  pthread_mutex_unlock(&g_control_lock);
  if (ready) alloc::ResetThreadSampling();
  return ready;
}

void StartSampler() {
  int64_t interval = alloc::CurrentSettings().Get(base::SettingId::kSampleInterval);
  if (interval != 0) SetSampleInterval(interval);
}

void LoadUnwinderFallbackIfNeeded() {
  if (!LibunwindNeeded()) return;
  pthread_mutex_lock(&g_control_lock);
  if (LibunwindNeeded()) LoadFallbackLibunwind();
  pthread_mutex_unlock(&g_control_lock);
}

void LockSamplerForFork() { pthread_mutex_lock(&g_control_lock); }
void UnlockSamplerAfterFork() { pthread_mutex_unlock(&g_control_lock); }

SamplerStats GetSamplerStats() {
  SampleTableCounts counts = ReadSampleTableCounts();
  SamplerStats stats = {};
  stats.samples_taken = counts.samples_taken;
  stats.samples_dropped = counts.samples_dropped;
  stats.live_samples = counts.live_samples;
  stats.table_bytes = counts.table_bytes;
  stats.table_resident_bytes = counts.resident_bytes;
  stats.unwinder_cache_bytes = UnwinderCacheBytes();
  stats.unwinder_rejected_mappings = UnwinderRejectedMappings();
  CachedUnwinderCounts unwinder = ReadCachedUnwinderCounts();
  stats.unwinder_fallbacks = unwinder.fallbacks;
  stats.truncated_stacks = unwinder.truncated_stacks;
  stats.rule_entries = unwinder.rule_entries;
  stats.rule_home_entries = unwinder.rule_home_entries;
  stats.rule_misses = unwinder.rule_misses;
  stats.rules_not_inserted = unwinder.rules_not_inserted;
  stats.interval_bytes = alloc::CurrentSampleInterval();
  return stats;
}

}  // namespace memward::accounting
