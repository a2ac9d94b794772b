// A new thread's start on jemalloc's automatic arenas.
//
// jemalloc 5.3 makes two costs fall on every thread that starts, allocates
// and exits (a thread per connection, a pool that shrinks and grows):
//
//  - When a thread exits, tcache_destroy purges every dirty page of its
//    automatic arena if no other thread is assigned to that arena and
//    background threads are off. The next thread assigned there faults each
//    page in again.
//  - A new thread's cache stack (about 32 KiB, allocated zeroed from arena 0)
//    usually reuses the stack of a thread that exited. jemalloc zeroes such a
//    recycled extent of its default hooks with madvise(MADV_DONTNEED), so the
//    new thread faults the stack in again page by page.
//
// StartThreadOnEngine, run by a thread's first allocation, removes both:
//
//  - It counts one extra thread on an automatic arena the first time any
//    thread of the process is assigned to it, so that arena's count never
//    falls to zero. Its pages then decay after dirty_decay like those of an
//    arena in use. The extra thread is the same on every arena, so jemalloc
//    still assigns a new thread to the arena with the fewest threads.
//  - It creates the thread's cache while ZeroingWithMemset() is true. The
//    madvise wrapper (alloc/engine_shims.cc) then fails MADV_DONTNEED, and
//    jemalloc falls back to memset, which touches no new page.
//
// With both, workload_thread_churn (10,000 threads, 4 at a time) took 0.37 s
// and 1,400 minor faults against 1.8 s and 119,000 before, on a 2-vCPU
// Intel Xeon virtual machine.
//
// NOTE: the extra thread count uses jemalloc 5.3's internal
// arena_nthreads_inc and arenas array, which the embedded archive
// (cmake/EmbeddedJemalloc.cmake) links but does not export. thread_start.cc
// refuses to build against another jemalloc version.
#ifndef MEMWARD_ALLOC_THREAD_START_H_
#define MEMWARD_ALLOC_THREAD_START_H_

#include "alloc/macros.h"

namespace memward::alloc {

// Whether the calling thread is creating its jemalloc cache, when a failed
// MADV_DONTNEED makes jemalloc zero memory with memset.
bool ZeroingWithMemset();

// Creates the calling thread's jemalloc cache and keeps its automatic arena
// from being purged when its threads exit. Called once per thread, outside
// jemalloc, after Bootstrap.
MEMWARD_NOINLINE void StartThreadOnEngine();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_THREAD_START_H_
