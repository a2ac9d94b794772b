// Purging and statistics through the engine's mallctl interface.
#include "alloc/purge.h"

#include <stdint.h>

#include "alloc/allocator.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/thread_cache.h"
#include "base/log.h"

namespace memward::alloc {

void RefreshEpoch() {
  // A statistics call may be a new thread's first jemalloc call, which
  // creates its cache: it must be started on the engine first.
  if (MEMWARD_UNLIKELY(!t_started_on_engine)) PrepareThread();
  uint64_t epoch = 1;
  size_t length = sizeof(epoch);
  mwje_mallctl("epoch", &epoch, &length, &epoch, length);
}

size_t ReadSizeStatistic(const char* name) {
  size_t value = 0;
  size_t length = sizeof(value);
  if (mwje_mallctl(name, &value, &length, nullptr, 0) != 0) return 0;
  return value;
}

namespace {

size_t ReadSize(const char* name) { return ReadSizeStatistic(name); }

// Bytes in unused dirty and muzzy pages over all arenas, as of the last epoch.
size_t ReadUnusedPageBytesAsOfLastEpoch() {
  char name[96];
  base::Format(name, sizeof(name), "stats.arenas.%u.pdirty", kAllArenas);
  size_t pages = ReadSize(name);
  base::Format(name, sizeof(name), "stats.arenas.%u.pmuzzy", kAllArenas);
  pages += ReadSize(name);
  return pages * PageSize();
}

}  // namespace

HeapStatistics ReadHeapStatistics() {
  RefreshEpoch();
  return ReadHeapStatisticsAsOfLastEpoch();
}

HeapStatistics ReadHeapStatisticsAsOfLastEpoch() {
  HeapStatistics stats;
  stats.allocated = ReadSize("stats.allocated");
  stats.active = ReadSize("stats.active");
  stats.resident = ReadSize("stats.resident");
  stats.mapped = ReadSize("stats.mapped");
  stats.retained = ReadSize("stats.retained");
  stats.metadata = ReadSize("stats.metadata");
  stats.dirty = ReadUnusedPageBytesAsOfLastEpoch();
  return stats;
}

size_t PurgeUnusedPages() {
  // The calling thread's free objects go back to their arenas first, so
  // that slabs they alone kept in use can be purged: its slot caches and
  // explicit caches for memward's arenas, then jemalloc's automatic cache.
  FlushOwnCaches();
  mwje_mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
  size_t unused = ReadUnusedPageBytes();
  PurgeEveryArena();
  return unused;
}

size_t ReadUnusedPageBytes() {
  RefreshEpoch();
  return ReadUnusedPageBytesAsOfLastEpoch();
}

void PurgeEveryArena() {
  char name[64];
  base::Format(name, sizeof(name), "arena.%u.purge", kAllArenas);
  mwje_mallctl(name, nullptr, nullptr, nullptr, 0);
}

}  // namespace memward::alloc
