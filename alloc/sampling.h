// The allocation sampler's per-allocation part.
//
// Sampling is a Poisson process over allocated bytes: gaps between sample
// points are exponentially distributed with mean R (the sample_interval
// setting), and an allocation is sampled when its requested bytes cover a
// sample point. An allocation of s bytes is therefore sampled with
// probability 1 - exp(-s / R), and its sample stands for s / (1 - exp(-s / R))
// bytes: an unbiased estimate at the moment it is taken.
//
// Fast path: each allocating entry point subtracts the requested size from
// the thread's countdown and branches once (SampleCountdownCrossed). Only
// the allocation that runs the countdown out calls into this file's slow
// path. The same test sends a thread on the slow path (its first call, a
// tenant scope) there, because such a thread's countdown is parked at 0
// (alloc/thread_state.h). Folding that flag into the countdown took a load,
// a compare and a branch off malloc. 16 to 256 B malloc/free pairs went from
// 1.14-1.18x to 1.08-1.10x jemalloc's time (bench/micro/malloc_micro.cc, 8
// alternating rounds on a 2-vCPU Intel Xeon virtual machine).
//
// A sampled allocation is served from the sampler's own arena (ArenaKind::
// kSampled) without a header. In a shared-arena scope, it keeps the room of
// the owner header it would have had unused, so its charge and usable size
// are those of the unsampled block. Its chunks are in the owner map, so free's existing owner
// check sends it to FreeOwned, which removes its sample through the table's
// lock-free address index. Its tenant (and request) is charged the usable
// size an unsampled block would have had. Sampled blocks of tenant 0 are
// counted apart (ProcessSampledBytes) and added to the process's live bytes.
#ifndef MEMWARD_ALLOC_SAMPLING_H_
#define MEMWARD_ALLOC_SAMPLING_H_

#include <stddef.h>
#include <stdint.h>

#include "alloc/macros.h"
#include "alloc/thread_state.h"

namespace memward::alloc {

// Subtracts `size` from the thread's countdown modulo 2^64 and returns
// whether `size` was at least the countdown, compared without sign. Such an
// allocation goes to the slow path, which must call DecideSample before it
// allocates: DecideSample parks the countdown again on a thread on the slow
// path. A parked countdown (0) is run out by every size, 0 and sizes above
// INT64_MAX included.
MEMWARD_ALWAYS_INLINE bool SampleCountdownCrossed(size_t size) {
#if defined(__x86_64__)
  // One subtraction from memory and one branch on its flags (CF or ZF),
  // which the compiler does not produce from the C form below. The
  // countdown is an input with a memory clobber, because GCC 12 loses the
  // labels of an asm goto with outputs in some out-of-line copies.
  asm goto("subq %1, %0\n\t"
           "jbe %l[crossed]"
           :
           : "m"(t_thread_state.sample_countdown), "r"(size)
           : "cc", "memory"
           : crossed);
  return false;
crossed:
  return true;
#else
  ThreadState& state = t_thread_state;
  const uint64_t countdown = static_cast<uint64_t>(state.sample_countdown);
  state.sample_countdown = static_cast<int64_t>(countdown - size);
  return MEMWARD_UNLIKELY(size >= countdown);
#endif
}

// The common case after a crossing on a thread on the slow path (a tenant
// scope): takes `size` from the parked countdown and parks the fast path's
// countdown again, when that leaves the parked one positive. Returns false,
// and changes nothing, when the allocation needs DecideSample instead (a
// sampler crossing, or a thread not on the slow path). Called inline after
// the crossing, a tenant scope's pair took 1 to 6 % longer than with the
// separate flag test, and 10 to 17 % longer when every such call went
// through DecideSample (bench/micro/tenant_micro.cc, same machine).
MEMWARD_ALWAYS_INLINE bool TakeFromParkedCountdown(size_t size) {
  ThreadState& state = t_thread_state;
  const uint64_t parked = static_cast<uint64_t>(state.parked_countdown);
  if (MEMWARD_UNLIKELY(state.slow_path == 0 || size >= parked)) return false;
  state.parked_countdown = static_cast<int64_t>(parked - size);
  state.sample_countdown = 0;
  return true;
}

// Settles the countdown that the allocation of `size` bytes has run out,
// decides whether the allocation is sampled, and draws the next gap. On a
// thread on the slow path it parks the countdown again and takes `size` from
// the parked one. Called after every crossing, even when the caller then
// does not sample (an explicit arena), or the thread's next allocation
// would skip the slow path.
MEMWARD_NOINLINE bool DecideSample(size_t size);

// Allocates `size` bytes as a sampled allocation: from the sampler's arena,
// charged to the thread's scope, with its stack recorded. When the sample
// cannot be recorded (tables full, sampler not set up yet), allocates the
// ordinary way. `alignment` is 0 or a power of two. Returns nullptr with
// errno set to ENOMEM on failure.
MEMWARD_NOINLINE void* AllocateSampled(size_t size, size_t alignment, bool zero);

// Moves `pointer` (not null) into a new sampled allocation of `size` bytes.
// On failure returns nullptr with errno set and leaves `pointer` untouched.
MEMWARD_NOINLINE void* ReallocateSampled(void* pointer, size_t size, size_t alignment, bool zero);

// Frees `pointer`, a block of the sampler's arena, removing its sample and
// crediting its owner. Reports corruption when it has no sample.
void FreeSampledBlock(void* pointer);

// The entry points' slow path after a crossing: a sampled allocation, or
// the ordinary one (alloc/allocator.h's *Unsampled functions).
MEMWARD_NOINLINE void* AllocateAfterCountdown(size_t size);
MEMWARD_NOINLINE void* AllocateZeroedAfterCountdown(size_t count, size_t size);
MEMWARD_NOINLINE void* AllocateAlignedAfterCountdown(size_t size, size_t alignment);
MEMWARD_NOINLINE void* ReallocateAfterCountdown(void* pointer, size_t size);

// Returns the usable size of `pointer`, a block of the sampler's arena: the
// size the block would have had unsampled.
size_t SampledUsableSize(const void* pointer);

// Starts the calling thread's thread-cache warm-up: the countdown then
// also runs out once the thread has allocated `warmup_bytes` more, and that
// crossing calls EnableThreadCache (alloc/thread_start.h).
// Gap bytes beyond the warm-up wait in the gap's rest, so sampling is not
// changed. Called by StartThreadOnEngine, outside jemalloc.
void BeginThreadCacheWarmup(int64_t warmup_bytes);

// Whether the calling thread is in its thread-cache warm-up, so it has no
// jemalloc cache yet.
bool InThreadCacheWarmup();

// Ends the calling thread's warm-up without changing its cache, because the
// program set thread.tcache.enabled itself.
void CancelThreadCacheWarmup();

// Sets the mean interval (0 for off) that threads pick up at their next
// crossing; `arena_slot` is the sampler's arena. Called outside malloc.
void ConfigureSampling(int64_t interval_bytes, uint32_t arena_slot);
int64_t CurrentSampleInterval();

// Bytes of sampled blocks charged to tenant 0 (the process), which live in
// the sampler's arena instead of jemalloc's automatic arenas.
int64_t ProcessSampledBytes();

// Clears the thread id the sampler cached; called in a forked child.
void ForgetThreadIdInChild();

// Makes the calling thread's next allocation re-read the interval.
void ResetThreadSampling();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_SAMPLING_H_
