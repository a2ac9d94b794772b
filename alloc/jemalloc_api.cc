// jemalloc's non-standard API, exported by memward so that a program built
// against jemalloc (Debian's redis-server links libjemalloc.so.2) allocates
// from memward's heap instead of starting a second one.
//
// These follow jemalloc 5.3's documented contracts, including their undefined
// cases (mallocx with size 0). Inside a tenant or request scope, and for
// pointers that a memward arena owns, they take memward's routed paths, and
// the caller's thread-cache flags are not used (xallocx then reports that it
// could not resize in place, which its contract allows). An arena flag that
// names one of memward's own arenas is dropped. A flag that names an arena
// the caller created is honoured, also inside a scope, and that memory is
// untagged.
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <atomic>

#include "accounting/owner_map.h"
#include "accounting/sample_table.h"
#include "alloc/allocator.h"
#include "alloc/macros.h"
#include "alloc/extent_hooks.h"
#include "alloc/thread_start.h"

using namespace memward::alloc;
using memward::accounting::OwnerSlotOf;

namespace {

constexpr int kLgAlignmentMask = 0x3f;
constexpr int kArenaMask = ~((1 << 20) - 1);

size_t AlignmentOfFlags(int flags) {
  int lg_alignment = flags & kLgAlignmentMask;
  return lg_alignment == 0 ? 0 : size_t{1} << lg_alignment;
}

bool NamesArena(int flags) { return (flags & kArenaMask) != 0; }

// Returns `flags` without an arena flag that names one of memward's arenas.
// Memory of those arenas is counted and tagged only on memward's own paths.
// A block taken with the caller's flag would be neither. jemalloc's automatic
// thread cache would also refill from that arena and hand its blocks to
// later plain mallocs.
int WithoutMemwardArena(int flags) {
  if (MEMWARD_LIKELY(!NamesArena(flags))) return flags;
  unsigned arena_index = (static_cast<unsigned>(flags) >> 20) - 1;
  return IsMemwardArena(arena_index) ? (flags & ~kArenaMask) : flags;
}

// The thread-cache controls that memward handles itself for a thread in its
// cache warm-up (alloc/thread_start.h), as for a thread with an empty cache.
enum class ThreadCacheControl { kOther, kFlush, kEnabled };

constexpr char kFlushName[] = "thread.tcache.flush";
constexpr char kEnabledName[] = "thread.tcache.enabled";
constexpr size_t kControlMibLength = 3;

// The two controls' MIBs, looked up at first use. Threads that race look
// them up alike and store the same values.
constinit size_t g_flush_mib[kControlMibLength] = {};
constinit size_t g_enabled_mib[kControlMibLength] = {};
constinit std::atomic<bool> g_control_mibs_ready{false};

ThreadCacheControl ThreadCacheControlNamed(const char* name) {
  if (name == nullptr) return ThreadCacheControl::kOther;
  if (strcmp(name, kFlushName) == 0) return ThreadCacheControl::kFlush;
  if (strcmp(name, kEnabledName) == 0) return ThreadCacheControl::kEnabled;
  return ThreadCacheControl::kOther;
}

bool LookUpControlMibs() {
  if (g_control_mibs_ready.load(std::memory_order_acquire)) return true;
  size_t flush_length = kControlMibLength;
  size_t enabled_length = kControlMibLength;
  if (mwje_mallctlnametomib(kFlushName, g_flush_mib, &flush_length) != 0 ||
      mwje_mallctlnametomib(kEnabledName, g_enabled_mib, &enabled_length) != 0 ||
      flush_length != kControlMibLength || enabled_length != kControlMibLength) {
    return false;
  }
  g_control_mibs_ready.store(true, std::memory_order_release);
  return true;
}

ThreadCacheControl ThreadCacheControlOfMib(const size_t* mib, size_t mib_length) {
  if (mib == nullptr || mib_length != kControlMibLength || !LookUpControlMibs()) {
    return ThreadCacheControl::kOther;
  }
  const size_t bytes = kControlMibLength * sizeof(size_t);
  if (memcmp(mib, g_flush_mib, bytes) == 0) return ThreadCacheControl::kFlush;
  if (memcmp(mib, g_enabled_mib, bytes) == 0) return ThreadCacheControl::kEnabled;
  return ThreadCacheControl::kOther;
}

// The result of thread.tcache.flush for a thread in its warm-up. jemalloc
// 5.3 fails a flush on a thread without a cache with EFAULT, which a program
// that never turned its cache off does not expect. There is nothing to
// flush, so the flush succeeds and, as jemalloc's, takes no value.
int FlushInWarmup(const void* old_value, const void* new_value) {
  return old_value != nullptr || new_value != nullptr ? EPERM : 0;
}

// Finishes a call of thread.tcache.enabled that jemalloc ran with `result`
// for a thread in its warm-up, and returns the result. The thread is to get
// its cache, so a read reports true where jemalloc reported false: a
// program that saves the value, turns the cache off and restores it then
// turns it back on. A successful write hands the cache to the program, and
// the warm-up ends without changing it.
int FinishEnabledInWarmup(int result, void* old_value, const size_t* old_length,
                          const void* new_value) {
  if (result != 0) return result;
  if (old_value != nullptr && old_length != nullptr && *old_length == sizeof(bool)) {
    *static_cast<bool*>(old_value) = true;
  }
  if (new_value != nullptr) CancelThreadCacheWarmup();
  return result;
}

// Runs a mallctl call, `run`, of `control` for a thread in its warm-up. A
// flush succeeds without jemalloc. A call of thread.tcache.enabled runs with
// memset zeroing, for the cache that a write of true creates, and
// FinishEnabledInWarmup finishes it.
template <typename Run>
int RunInWarmup(ThreadCacheControl control, void* old_value, const size_t* old_length,
                const void* new_value, Run run) {
  if (control == ThreadCacheControl::kOther) return run();
  if (control == ThreadCacheControl::kFlush) return FlushInWarmup(old_value, new_value);

  SetZeroingWithMemset(true);
  const int result = run();
  SetZeroingWithMemset(false);
  return FinishEnabledInWarmup(result, old_value, old_length, new_value);
}

// Whether a sampled call with `flags` can be served from the sampler's
// arena. A call that names an arena of the host's must get a block of that
// arena, so its sample is counted as dropped instead.
bool KeepsSample(int flags) {
  if (MEMWARD_LIKELY(!NamesArena(flags))) return true;
  memward::accounting::CountDroppedSample();
  return false;
}

}  // namespace

extern "C" {

MEMWARD_EXPORT void* mallocx(size_t size, int flags) {
  flags = WithoutMemwardArena(flags);
  if (MEMWARD_UNLIKELY(SampleCountdownCrossed(size)) && DecideSample(size) &&
      KeepsSample(flags)) {
    return AllocateSampled(size, AlignmentOfFlags(flags), (flags & kMallocxZero) != 0);
  }
  if (MEMWARD_UNLIKELY(TakesSlowPath()) && !NamesArena(flags)) {
    return AllocateSlow(size, AlignmentOfFlags(flags), (flags & kMallocxZero) != 0);
  }
  return mwje_mallocx(size, flags);
}

MEMWARD_EXPORT void* rallocx(void* pointer, size_t size, int flags) {
  flags = WithoutMemwardArena(flags);
  if (MEMWARD_UNLIKELY(SampleCountdownCrossed(size)) && DecideSample(size) &&
      KeepsSample(flags)) {
    return ReallocateSampled(pointer, size, AlignmentOfFlags(flags), (flags & kMallocxZero) != 0);
  }
  uint16_t slot = OwnerSlotOf(pointer);
  if (MEMWARD_LIKELY(!TakesSlowPath() && slot == 0)) return mwje_rallocx(pointer, size, flags);
  if (AlignmentOfFlags(flags) == 0 && (flags & kMallocxZero) == 0) {
    return ReallocateSlow(pointer, size, slot);
  }
  size_t old_size = UsableSize(pointer);
  void* result = AllocateSlow(size, AlignmentOfFlags(flags), (flags & kMallocxZero) != 0);
  if (result == nullptr) return nullptr;
  memcpy(result, pointer, old_size < size ? old_size : size);
  Deallocate(pointer);
  return result;
}

MEMWARD_EXPORT size_t xallocx(void* pointer, size_t size, size_t extra, int flags) {
  uint16_t slot = OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(slot != 0)) return UsableSizeOwned(pointer, slot);
  return mwje_xallocx(pointer, size, extra, flags);
}

MEMWARD_EXPORT size_t sallocx(const void* pointer, int flags) {
  uint16_t slot = OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(slot != 0)) return UsableSizeOwned(pointer, slot);
  return mwje_sallocx(pointer, flags);
}

MEMWARD_EXPORT void dallocx(void* pointer, int flags) {
  uint16_t slot = OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(slot != 0)) return FreeOwned(pointer, slot);
  mwje_dallocx(pointer, flags);
}

MEMWARD_EXPORT void sdallocx(void* pointer, size_t size, int flags) {
  uint16_t slot = OwnerSlotOf(pointer);
  if (MEMWARD_UNLIKELY(slot != 0)) {
    return AlignmentOfFlags(flags) == 0 ? FreeOwnedSized(pointer, slot, size)
                                        : FreeOwned(pointer, slot);
  }
  // With no flags, jemalloc's free is the faster path (see DeallocateSized).
  if (flags == 0) return mwje_free(pointer);
  mwje_sdallocx(pointer, size, flags);
}

MEMWARD_EXPORT size_t nallocx(size_t size, int flags) {
  EnterAllocation();
  return mwje_nallocx(size, flags);
}

MEMWARD_EXPORT int mallctl(const char* name, void* old_value, size_t* old_length, void* new_value,
                           size_t new_length) {
  EnterAllocation();
  const auto run = [=] { return mwje_mallctl(name, old_value, old_length, new_value, new_length); };
  if (MEMWARD_UNLIKELY(InThreadCacheWarmup())) {
    return RunInWarmup(ThreadCacheControlNamed(name), old_value, old_length, new_value, run);
  }
  return run();
}

MEMWARD_EXPORT int mallctlnametomib(const char* name, size_t* mib, size_t* mib_length) {
  EnterAllocation();
  return mwje_mallctlnametomib(name, mib, mib_length);
}

MEMWARD_EXPORT int mallctlbymib(const size_t* mib, size_t mib_length, void* old_value,
                                size_t* old_length, void* new_value, size_t new_length) {
  EnterAllocation();
  const auto run = [=] {
    return mwje_mallctlbymib(mib, mib_length, old_value, old_length, new_value, new_length);
  };
  if (MEMWARD_UNLIKELY(InThreadCacheWarmup())) {
    return RunInWarmup(ThreadCacheControlOfMib(mib, mib_length), old_value, old_length, new_value,
                       run);
  }
  return run();
}

MEMWARD_EXPORT void malloc_stats_print(void (*write)(void*, const char*), void* context,
                                       const char* options) {
  EnterAllocation();
  mwje_malloc_stats_print(write, context, options);
}

}  // extern "C"
