// The C API of the allocation sampler (include/memward/memward.h).
#include <string.h>

#include "accounting/sample_table.h"
#include "accounting/sampler.h"
#include "alloc/macros.h"
#include "alloc/sampling.h"
#include "memward/memward.h"

extern "C" {

MEMWARD_EXPORT int memward_sampler_stats_get(memward_sampler_stats* stats) {
  if (stats == nullptr) return MEMWARD_ERROR_INVALID;
  memward::accounting::SamplerStats internal = memward::accounting::GetSamplerStats();
  memset(stats, 0, sizeof(*stats));
  stats->interval_bytes = internal.interval_bytes;
  stats->samples_taken = internal.samples_taken;
  stats->samples_dropped = internal.samples_dropped;
  stats->live_samples = internal.live_samples;
  stats->table_bytes = internal.table_bytes;
  stats->table_resident_bytes = internal.table_resident_bytes;
  stats->unwinder_cache_bytes = internal.unwinder_cache_bytes;
  stats->process_sampled_bytes = memward::alloc::ProcessSampledBytes();
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_sample_interval_set(int64_t bytes) {
  return memward::accounting::SetSampleInterval(bytes) ? MEMWARD_OK : MEMWARD_ERROR_INVALID;
}

}  // extern "C"
