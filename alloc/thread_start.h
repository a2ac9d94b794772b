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
// A third cost falls on short threads of any allocator with thread caches.
// Each cache fill takes a batch of regions (10 of 8 KiB, 100 of 16 B with
// jemalloc's defaults) for one allocation, and the threads after it write
// into the batches' pages. Four short threads at a time kept about 2 MiB of
// slabs active in workload_thread_churn. tcmalloc's caches start small for
// the same reason. Here a thread started while threads churn (16 starts
// within 10 ms) loses the cache that jemalloc created at its first call. It
// gets a new one once it has allocated tcache_warmup bytes (256 KiB by
// default). Until
// then its calls lock the arena's bins, which costs a short thread less
// than one cache fill. With the warm-up, that program's peak RSS went from
// 8.2-8.5 to 6.9-7.2 MiB in about the same time.
//
// Other threads keep their cache from their first call, as with jemalloc
// alone. A cache that starts in the middle of a periodic pattern can settle
// into a fill and a flush on every round: jemalloc 5.3 fills half a bin and
// flushes a full bin to half, so batches of 100 blocks of 64 B in a bin of
// 128 can cycle between 64 and 100 cached blocks. With a warm-up for every
// thread, the two-thread 64-byte batch rows of bench/micro/malloc_micro.cc
// took 1.3 to 1.6 times jemalloc's time in two runs.
//
// While a thread warms up, memward's mallctl handles two controls
// (alloc/jemalloc_api.cc). thread.tcache.flush succeeds, where jemalloc would
// fail it with EFAULT, and thread.tcache.enabled reads true. A program that
// writes thread.tcache.enabled ends the warm-up, and its setting stays. The
// warm-up also ends at the thread's exit, before jemalloc tears down the
// thread's state (CreateWarmupExitKey). The bytes allocated count once each:
// with a small sample_interval, the part of a crossing past the countdown
// counts too (alloc/sampling.cc).
//
// StartThreadOnEngine, run by a thread's first allocation, removes the
// first two:
//
//  - It creates the thread's cache while ZeroingWithMemset() is true. The
//    madvise wrapper (alloc/engine_shims.cc) then fails MADV_DONTNEED, and
//    jemalloc falls back to memset, which touches no new page.
//  - It places the arena hold: one extra thread counted on every automatic
//    arena but arena 0, so no arena's count falls to zero at a thread's
//    exit. Arena 0 has memward's warden thread instead, which stays
//    assigned to it for as long as the process runs the decay below. Two
//    conditions apply.
//    The warden must run DecayArenas every second, because jemalloc decays
//    an arena only on its own allocations and thread exits, and an arena
//    that no thread uses after a burst would keep its dirty pages. And
//    every automatic arena must exist, because jemalloc creates a new arena
//    for a new thread whenever no existing one has zero threads and an index
//    is still free. An earlier hold would make one thread after another
//    create every arena. With one extra thread on every arena alike (the
//    warden on arena 0), jemalloc still assigns a new thread to the arena
//    with the fewest of the program's threads.
//
// With both, workload_thread_churn (10,000 threads, 4 at a time) took 0.37 s
// and 1,400 minor faults against 1.8 s and 119,000 before, on a 2-vCPU
// Intel Xeon virtual machine.
//
// NOTE: the hold uses jemalloc 5.3's internal arena_nthreads_inc and arenas
// array, which the embedded archive (cmake/EmbeddedJemalloc.cmake) links but
// does not export. thread_start.cc refuses to build against another jemalloc
// version.
#ifndef MEMWARD_ALLOC_THREAD_START_H_
#define MEMWARD_ALLOC_THREAD_START_H_

#include "alloc/macros.h"

namespace memward::alloc {

// Whether the calling thread is creating a jemalloc cache, when a failed
// MADV_DONTNEED makes jemalloc zero memory with memset.
bool ZeroingWithMemset();

// Makes the calling thread's zeroing in jemalloc use memset (true) or
// MADV_DONTNEED again (false), around another jemalloc call that allocates
// a zeroed cache stack (tcache.create).
void SetZeroingWithMemset(bool memset_zeroing);

// Creates the calling thread's jemalloc cache, and places the arena hold
// once the conditions above are met. Runs once per thread: PrepareThread
// calls it at the thread's first allocation and on later slow paths, outside
// jemalloc, after Bootstrap.
MEMWARD_NOINLINE void StartThreadOnEngine();

// Gives the calling thread its jemalloc thread cache at the end of its
// warm-up (the tcache_warmup setting), zeroing a recycled cache stack with
// memset. Called from the sampler's slow path (alloc/sampling.cc), outside
// jemalloc, once per thread.
void EnableThreadCache();

// Creates the pthread key whose destructor ends a thread's warm-up at its
// exit. The bootstrap calls it before jemalloc starts, so the key comes
// before jemalloc's own. Its destructor then runs first in each of glibc's
// destructor passes, before jemalloc tears the thread's state down.
// Allocates nothing.
void CreateWarmupExitKey();

// Whether StartThreadOnEngine has run on this thread. A thread that has not
// run it stays on the slow path (alloc/thread_state.h), even after leaving a
// scope, so that its first untagged allocation runs it.
extern constinit thread_local bool t_started_on_engine
    __attribute__((tls_model("initial-exec")));

// Runs jemalloc's time-based decay on every arena, as its background thread
// would, and allows the arena hold from then on. The first run moves the
// calling thread, the warden, to arena 0. jemalloc itself decays an arena
// only on that arena's allocations and thread exits. Without this call, an
// arena that goes idle (an automatic arena after a burst of threads, the
// sampler's arena after the last sampled free) keeps its dirty pages.
// Called by the warden every second.
void DecayArenas();

// Marks the calling thread as memward's warden, before it calls into
// jemalloc: StartThreadOnEngine then moves it to arena 0 at its first
// allocation (MoveCallingThreadToArenaZero).
void MarkCallingThreadAsWarden();

// Stores the function that requests an early DecayArenas from the warden.
// It is called inside malloc when the program's second thread starts, so it
// must not lock or allocate.
void SetArenaDecayRequest(void (*request)());

// Assigns the calling thread to automatic arena 0, for memward's mostly idle
// warden thread, which then counts as arena 0's extra thread. The warden's
// first allocation and the first DecayArenas call it. jemalloc
// gives a new thread the first of the arenas with the fewest threads. A
// warden counted on arena 1 as well as the hold made the next thread of a
// program share arena 0 with its main thread, and a two-thread benchmark
// then ran up to 10 times slower.
void MoveCallingThreadToArenaZero();

// Drops the hold in a forked child, whose arena thread counts jemalloc's
// child fork handler has reset to the forking thread's alone. The child
// gets the hold again once its own warden has moved to arena 0 and run
// DecayArenas. A child whose warden cannot start (a seccomp filter) never
// gets the hold. Called by memward's child fork handler, after jemalloc's.
void ResetArenaHoldInChild();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_THREAD_START_H_
