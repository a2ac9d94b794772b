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
// the thread's countdown and branches on its sign (SampleCountdownCrossed).
// Only the allocation that crosses zero calls into this file's slow path.
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

// Subtracts `size` from the thread's countdown; returns whether it crossed
// zero, which sends the allocation to the sampler's slow path.
// The subtraction is done modulo 2^64, so a size above INT64_MAX (an
// allocation that fails anyway) cannot overflow the signed countdown.
MEMWARD_ALWAYS_INLINE bool SampleCountdownCrossed(size_t size) {
  ThreadState& state = t_thread_state;
  state.sample_countdown =
      static_cast<int64_t>(static_cast<uint64_t>(state.sample_countdown) - size);
  return MEMWARD_UNLIKELY(state.sample_countdown < 0);
}

// Decides whether the allocation of `size` bytes that crossed the countdown
// is sampled, and draws the next gap. Called only after a crossing.
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
