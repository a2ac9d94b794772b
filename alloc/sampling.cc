// The sampler's slow path: the sampling decision, sampled allocations and
// the frees of sampled blocks.
#include "alloc/sampling.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

#include "accounting/owner_map.h"
#include "accounting/sample_table.h"
#include "accounting/stack_capture.h"
#include "accounting/tenant.h"
#include "alloc/allocator.h"
#include "alloc/arena_registry.h"
#include "alloc/dirty_bound.h"
#include "alloc/engine.h"
#include "alloc/routing.h"
#include "alloc/sample_math.h"
#include "alloc/sampled_slabs.h"
#include "alloc/shared_header.h"
#include "base/log.h"

namespace memward::alloc {
namespace {

// Gaps are fed to the countdown in steps of at most this many bytes, so a
// thread notices a changed interval within 4 MiB of its own allocations.
constexpr int64_t kRecheckStep = 4 << 20;

// The interval (low 40 bits) and a change counter (high 24 bits) in one
// word, so a thread reads a consistent pair with one load. The counter is
// never 0 once ConfigureSampling has run, and threads start at epoch 0.
constinit std::atomic<uint64_t> g_config{0};
constexpr unsigned kEpochShift = 40;
constinit std::atomic<uint32_t> g_sampled_slot{0};
constinit std::atomic<int64_t> g_process_sampled_bytes{0};

int64_t IntervalOf(uint64_t config) {
  return static_cast<int64_t>(config & ((uint64_t{1} << kEpochShift) - 1));
}
uint32_t EpochOf(uint64_t config) { return static_cast<uint32_t>(config >> kEpochShift); }

// xorshift64* (Vigna, 2016): fast, 64-bit state, good enough for gaps.
uint64_t NextRandom(ThreadState& state) {
  if (MEMWARD_UNLIKELY(state.sample_random == 0)) {
    uint64_t seed = static_cast<uint64_t>(accounting::SampleClockNs()) ^
                    (static_cast<uint64_t>(syscall(SYS_gettid)) << 32) ^
                    reinterpret_cast<uintptr_t>(&state);
    state.sample_random = seed != 0 ? seed : 0x9e3779b97f4a7c15ull;
  }
  uint64_t x = state.sample_random;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  state.sample_random = x;
  return x * 0x2545f4914f6cdd1dull;
}

// Returns an exponentially distributed gap with mean `interval`, at least 1.
int64_t DrawGap(ThreadState& state, int64_t interval) {
  // u is uniform in (0, 1], so -log(u) is finite.
  double u = static_cast<double>((NextRandom(state) >> 11) + 1) * 0x1.0p-53;
  double gap = NegativeLog(u) * static_cast<double>(interval);
  if (gap < 1) return 1;
  if (gap > 0x1.0p62) return int64_t{1} << 62;
  return static_cast<int64_t>(gap);
}

// Bytes the calling thread may still be fed before its thread-cache
// warm-up ends; -1 when it has no warm-up (its cache is enabled, or
// tcache_warmup is 0), which is also each thread's value until
// StartThreadOnEngine runs.
constinit thread_local int64_t t_warmup_rest __attribute__((tls_model("initial-exec"))) = -1;

// Shortens a step of at most `step` bytes to the warm-up's rest, and counts
// it against that rest. Steps are fed only when the countdown has run out,
// so a rest of 0 means the whole warm-up is allocated: the thread then gets
// its cache, and the step is fed whole.
int64_t TakeWarmupStep(int64_t step) {
  if (MEMWARD_LIKELY(t_warmup_rest < 0)) return step;
  if (t_warmup_rest == 0) {
    t_warmup_rest = -1;
    EnableThreadCache();
    return step;
  }
  if (step > t_warmup_rest) step = t_warmup_rest;
  t_warmup_rest -= step;
  return step;
}

// Counts against the warm-up's rest the bytes that the crossing allocation
// took past the countdown (-countdown), which a new start of the countdown
// drops. Without it a small sample_interval, whose crossings drop most of
// each allocation, made a warm-up of 256 KiB last for more than 64 MiB.
void CountWarmupOvershoot(int64_t countdown) {
  if (MEMWARD_LIKELY(t_warmup_rest <= 0) || countdown >= 0) return;
  const uint64_t overshoot = 0 - static_cast<uint64_t>(countdown);
  const uint64_t rest = static_cast<uint64_t>(t_warmup_rest);
  t_warmup_rest = overshoot >= rest ? 0 : static_cast<int64_t>(rest - overshoot);
}

// Adds up to kRecheckStep of the pending gap to `countdown`, and no more
// than the warm-up's rest.
void FeedGap(ThreadState& state, int64_t& countdown) {
  int64_t step = state.sample_gap_rest < kRecheckStep ? state.sample_gap_rest : kRecheckStep;
  step = TakeWarmupStep(step);
  countdown += step;
  state.sample_gap_rest -= step;
}

// Starts a new gap at the current position (the end of the last allocation).
void StartGap(ThreadState& state, int64_t& countdown, int64_t interval) {
  countdown = 0;
  state.sample_gap_rest = DrawGap(state, interval);
  FeedGap(state, countdown);
}

// Takes `size` from the sampler's countdown after the fast path's test ran
// out, and returns that countdown. The fast path took the size from
// `sample_countdown`, which on a thread on the slow path is parked at 0 and
// must return to 0. A size above INT64_MAX (an allocation that fails) is
// given back, so that it cannot wrap the signed countdown.
int64_t& SettleCountdown(ThreadState& state, size_t size) {
  int64_t& countdown = SamplerCountdown(state);
  if (state.slow_path != 0) {
    state.sample_countdown = 0;
    countdown = static_cast<int64_t>(static_cast<uint64_t>(countdown) - size);
  }
  if (size > static_cast<uint64_t>(INT64_MAX)) {
    countdown = static_cast<int64_t>(static_cast<uint64_t>(countdown) + size);
  }
  return countdown;
}

}  // namespace

MEMWARD_TEXT bool DecideSample(size_t size) {
  ThreadState& state = t_thread_state;
  int64_t& countdown = SettleCountdown(state, size);
  uint64_t config = g_config.load(std::memory_order_acquire);
  int64_t interval = IntervalOf(config);
  if (interval == 0) {
    state.sample_epoch = EpochOf(config);
    CountWarmupOvershoot(countdown);
    countdown = TakeWarmupStep(kRecheckStep);
    state.sample_gap_rest = 0;
    return false;
  }
  if (size > static_cast<uint64_t>(INT64_MAX)) return false;
  if (state.sample_epoch != EpochOf(config)) {
    // A new interval: the process restarts at this allocation, which is
    // sampled if the first new gap ends inside it. Exponential gaps have no
    // memory, so dropping the old gap's rest biases nothing.
    state.sample_epoch = EpochOf(config);
    StartGap(state, countdown, interval);
    countdown -= static_cast<int64_t>(size);
  }
  while (countdown <= 0 && state.sample_gap_rest > 0) FeedGap(state, countdown);
  if (countdown > 0) return false;
  CountWarmupOvershoot(countdown);
  StartGap(state, countdown, interval);
  return true;
}

namespace {

// Captures the stack with the thread taken out of its scope, so that what
// the unwinder allocates (libunwind's own bookkeeping, on a thread's first
// capture) is untagged memory of the process, never a user tenant's. The
// countdown is raised out of reach meanwhile, so none of it is sampled.
MEMWARD_TEXT uint32_t CaptureOutsideScope(uintptr_t* frames, uint64_t* hash) {
  ThreadState& state = t_thread_state;
  ThreadState saved = state;
  SetUnroutedScope(state, 0, 0);
  state.sample_countdown = INT64_MAX;
  uint32_t depth = accounting::CaptureStack(frames, accounting::kMaxSampleFrames,
                                            &saved.sample_captures, hash);
  state = saved;
  return depth;
}

// Records the sample of `block` (charged `charge` bytes) in `index`.
MEMWARD_TEXT void RecordSample(uint32_t index, void* block, size_t size, size_t charge,
                               size_t header, const ThreadState& state, uint32_t request_slot) {
  uintptr_t frames[accounting::kMaxSampleFrames];
  uint64_t hash = 0;
  uint32_t depth = CaptureOutsideScope(frames, &hash);

  double interval = static_cast<double>(IntervalOf(g_config.load(std::memory_order_relaxed)));
  double bytes = static_cast<double>(size == 0 ? 1 : size);
  double probability = interval > 0 ? OneMinusExpMinus(bytes / interval) : 1.0;
  accounting::SampleFields fields = {};
  fields.requested_bytes = size;
  fields.usable_bytes = charge - header;
  fields.unused_bytes = static_cast<uint32_t>(header);
  ThreadState& writable = t_thread_state;
  if (writable.sample_thread_id == 0) {
    writable.sample_thread_id = static_cast<uint32_t>(syscall(SYS_gettid));
  }
  fields.thread_id = writable.sample_thread_id;
  fields.tenant = state.tenant;
  fields.arena_slot = state.slot;
  fields.request_slot = request_slot;
  fields.request_generation = request_slot != 0 ? state.generation : 0;
  fields.weight_bytes = bytes / probability;
  fields.weight_objects = 1.0 / probability;
  uint32_t site =
      accounting::AddToSite(frames, depth, hash, fields.weight_bytes, fields.weight_objects);
  accounting::PublishSample(index, block, site, fields);
}

// Charges or credits `delta` to the owner of a sampled block.
void ChargeSampledBlock(accounting::TenantId tenant, uint32_t arena_slot,
                        const accounting::TenantDelta& delta) {
  if (tenant == accounting::kProcessTenant) {
    g_process_sampled_bytes.fetch_add(delta.live, std::memory_order_relaxed);
    return;
  }
  accounting::PublishDelta(accounting::TenantAt(tenant).counters, delta);
  if (arena_slot != 0 && SlotAt(arena_slot).kind == ArenaKind::kRequest) {
    accounting::PublishDelta(SlotAt(arena_slot).request, delta);
  }
}

}  // namespace

MEMWARD_TEXT void* AllocateSampled(size_t size, size_t alignment, bool zero) {
  ThreadState& state = t_thread_state;
  if (state.slot == 0) PrepareThread();
  // memward's own bookkeeping is never sampled: a profile shows the program's
  // memory, and memward's part is reported as the memward tenant.
  if (MEMWARD_UNLIKELY(state.tenant == accounting::kMemwardTenant)) {
    return AllocateSlow(size, alignment, zero);
  }
  uint32_t sampled_slot = g_sampled_slot.load(std::memory_order_acquire);
  uint32_t index = sampled_slot != 0 ? accounting::ReserveSample() : accounting::kNoSample;
  if (index == accounting::kNoSample) {
    accounting::CountDroppedSample();
    return AllocateSlow(size, alignment, zero);
  }

  // In the shared arena the block would carry an owner header. The sampled
  // block keeps that room unused, so its charge and usable size are those
  // the unsampled block would have had.
  int align_flags = alignment == 0 ? 0 : MallocxAlign(alignment);
  size_t header = state.shared_scope ? SharedHeaderOffset(alignment) : 0;
  size_t request = size == 0 ? 1 : size;
  if (__builtin_add_overflow(request, header, &request)) {
    accounting::ReleaseSample(index);
    errno = ENOMEM;
    return nullptr;
  }
  size_t charge = mwje_nallocx(request, align_flags);
  accounting::Tenant& tenant = accounting::TenantAt(state.tenant);
  if (charge == 0 || (state.tenant != accounting::kProcessTenant &&
                      accounting::WouldPassHardLimit(tenant, state.batch.LiveBytes(), charge))) {
    accounting::ReleaseSample(index);
    if (charge != 0) tenant.counters.refused_allocations.fetch_add(1, std::memory_order_relaxed);
    errno = ENOMEM;
    return nullptr;
  }
  PinSlabOf(charge);
  void* block = mwje_mallocx(request, SlotAt(sampled_slot).arena_flag | kMallocxTcacheNone |
                                          align_flags | (zero ? kMallocxZero : 0));
  if (block == nullptr) {
    accounting::ReleaseSample(index);
    errno = ENOMEM;
    return nullptr;
  }
  if (MEMWARD_UNLIKELY(accounting::OwnerSlotOf(block) != sampled_slot)) {
    // jemalloc served another arena (it does so on a thread it has torn
    // down): free and allocate the ordinary way, without a sample.
    mwje_dallocx(block, kMallocxTcacheNone);
    accounting::ReleaseSample(index);
    accounting::CountDroppedSample();
    return AllocateSlow(size, alignment, zero);
  }

  uint32_t request_slot = state.request_scope ? state.slot : 0;
  RecordSample(index, block, size, charge, header, state, request_slot);
  accounting::TenantDelta delta;
  delta.AddAllocation(static_cast<int64_t>(charge));
  ChargeSampledBlock(state.tenant, state.slot, delta);
  return block;
}

MEMWARD_TEXT void* ReallocateSampled(void* pointer, size_t size, size_t alignment, bool zero) {
  size_t old_size = UsableSize(pointer);
  void* result = AllocateSampled(size, alignment, zero);
  if (result == nullptr) return nullptr;
  memcpy(result, pointer, old_size < size ? old_size : size);
  Deallocate(pointer);
  return result;
}

void FreeSampledBlock(void* pointer) {
  accounting::SampleOwner owner;
  if (!accounting::RemoveSample(pointer, &owner)) {
    base::Fatal("free of %p in the sampler's arena, which has no sample: a pointer that "
                "memward did not return, or a double free",
                pointer);
  }
  size_t charge = mwje_sallocx(pointer, 0);
  mwje_dallocx(pointer, kMallocxTcacheNone);
  accounting::TenantDelta delta;
  delta.AddFree(static_cast<int64_t>(charge));
  ChargeSampledBlock(owner.tenant, owner.arena_slot, delta);
}

namespace {

// Passes a successful large allocation to the dirty-page bound
// (alloc/dirty_bound.h) and returns `result`.
MEMWARD_ALWAYS_INLINE void* NoteIfLarge(void* result, size_t size) {
  if (MEMWARD_UNLIKELY(size >= kLargeAllocationBytes) && result != nullptr) {
    NoteLargeAllocation(size);
  }
  return result;
}

}  // namespace

// Its callers, malloc and the unaligned operator new, have already tried
// TakeFromParkedCountdown inline.
MEMWARD_TEXT void* AllocateAfterCountdown(size_t size) {
  if (DecideSample(size)) return NoteIfLarge(AllocateSampled(size, 0, false), size);
  return NoteIfLarge(AllocateUnsampled(size), size);
}

MEMWARD_TEXT void* AllocateZeroedAfterCountdown(size_t count, size_t size) {
  size_t total = 0;
  if (__builtin_mul_overflow(count, size, &total)) {
    // Settles the countdown, which the fast path took the wrapped product
    // from. The allocation fails with ENOMEM, so a sample it drew is
    // counted as dropped.
    if (DecideSample(count * size)) accounting::CountDroppedSample();
    return AllocateZeroedUnsampled(count, size);
  }
  if (TakeFromParkedCountdown(total)) return AllocateZeroedUnsampled(count, size);
  if (DecideSample(total)) return NoteIfLarge(AllocateSampled(total, 0, true), total);
  return NoteIfLarge(AllocateZeroedUnsampled(count, size), total);
}

MEMWARD_TEXT void* AllocateAlignedAfterCountdown(size_t size, size_t alignment) {
  if (TakeFromParkedCountdown(size)) return AllocateAlignedUnsampled(size, alignment);
  if (DecideSample(size)) return NoteIfLarge(AllocateSampled(size, alignment, false), size);
  return NoteIfLarge(AllocateAlignedUnsampled(size, alignment), size);
}

MEMWARD_TEXT void* ReallocateAfterCountdown(void* pointer, size_t size) {
  if (TakeFromParkedCountdown(size)) return ReallocateUnsampled(pointer, size);
  if (DecideSample(size)) return NoteIfLarge(ReallocateSampled(pointer, size, 0, false), size);
  return NoteIfLarge(ReallocateUnsampled(pointer, size), size);
}

size_t SampledUsableSize(const void* pointer) {
  accounting::SampleOwner owner;
  if (!accounting::FindSample(pointer, &owner)) {
    base::Fatal("size query for %p in the sampler's arena, which has no sample: a pointer "
                "that memward did not return, or one already freed",
                pointer);
  }
  return mwje_sallocx(pointer, 0) - owner.unused_bytes;
}

void ConfigureSampling(int64_t interval_bytes, uint32_t arena_slot) {
  if (arena_slot != 0) g_sampled_slot.store(arena_slot, std::memory_order_release);
  uint64_t config = g_config.load(std::memory_order_relaxed);
  uint32_t epoch = EpochOf(config) + 1;
  if (epoch >= (1u << (64 - kEpochShift))) epoch = 1;
  g_config.store((static_cast<uint64_t>(epoch) << kEpochShift) | static_cast<uint64_t>(interval_bytes),
                 std::memory_order_release);
}

int64_t CurrentSampleInterval() { return IntervalOf(g_config.load(std::memory_order_acquire)); }

int64_t ProcessSampledBytes() { return g_process_sampled_bytes.load(std::memory_order_relaxed); }

void BeginThreadCacheWarmup(int64_t warmup_bytes) {
  ThreadState& state = t_thread_state;
  int64_t& countdown = SamplerCountdown(state);
  t_warmup_rest = warmup_bytes;
  if (countdown <= 0) return;
  // The countdown is fed already: what it contains beyond the warm-up goes back
  // to the gap's rest, to be fed after the warm-up has ended.
  int64_t fed = TakeWarmupStep(countdown);
  state.sample_gap_rest += countdown - fed;
  countdown = fed;
}

bool InThreadCacheWarmup() { return t_warmup_rest >= 0; }

void CancelThreadCacheWarmup() { t_warmup_rest = -1; }

void ForgetThreadIdInChild() { t_thread_state.sample_thread_id = 0; }

void ResetThreadSampling() {
  ThreadState& state = t_thread_state;
  state.sample_epoch = 0;
  state.sample_countdown = 0;
  state.parked_countdown = 0;
  state.sample_gap_rest = 0;
}

}  // namespace memward::alloc
