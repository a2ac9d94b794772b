// Purge and statistics controls over the embedded jemalloc, for malloc_trim,
// mallinfo and (later) the pressure ladder.
#ifndef MEMWARD_ALLOC_PURGE_H_
#define MEMWARD_ALLOC_PURGE_H_

#include <stddef.h>

namespace memward::alloc {

// A consistent snapshot of jemalloc's global statistics, in bytes.
struct HeapStatistics {
  size_t allocated = 0;  // live bytes handed to the program (usable sizes)
  size_t active = 0;     // bytes in active pages
  size_t resident = 0;   // bytes in physically resident pages, metadata included
  size_t mapped = 0;     // bytes in active extents mapped by the allocator
  size_t retained = 0;   // virtual memory kept for reuse, not backed
  size_t metadata = 0;   // the allocator's own bookkeeping
  size_t dirty = 0;      // unused pages not yet returned to the kernel
};

// Refreshes jemalloc's statistics (mallctl "epoch", about 9 us per arena).
void RefreshEpoch();

// Reads a size_t statistic by mallctl name as of the last epoch; 0 if the
// name is unknown.
size_t ReadSizeStatistic(const char* name);

// Refreshes jemalloc's statistics and returns them.
HeapStatistics ReadHeapStatistics();

// Returns jemalloc's statistics as of the last refresh, for a caller that
// has just refreshed them (each refresh costs about 9 us per arena).
HeapStatistics ReadHeapStatisticsAsOfLastEpoch();

// Empties the calling thread's caches (memward's slot caches and jemalloc's
// thread caches), then purges every arena's dirty and muzzy pages. Returns
// the number of bytes in pages that were purged. Other threads' caches are
// left as they are: only their own thread may touch them.
size_t PurgeUnusedPages();

// Refreshes jemalloc's statistics and returns the bytes in dirty and muzzy
// pages over all arenas.
size_t ReadUnusedPageBytes();

// Purges every arena's dirty and muzzy pages. Unlike PurgeUnusedPages it
// leaves the thread caches alone, so it can run inside malloc's slow path.
void PurgeEveryArena();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_PURGE_H_
