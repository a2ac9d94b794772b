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
#include <stddef.h>
#include <string.h>

#include "accounting/owner_map.h"
#include "accounting/sample_table.h"
#include "alloc/allocator.h"
#include "alloc/macros.h"
#include "alloc/extent_hooks.h"

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
  return mwje_mallctl(name, old_value, old_length, new_value, new_length);
}

MEMWARD_EXPORT int mallctlnametomib(const char* name, size_t* mib, size_t* mib_length) {
  EnterAllocation();
  return mwje_mallctlnametomib(name, mib, mib_length);
}

MEMWARD_EXPORT int mallctlbymib(const size_t* mib, size_t mib_length, void* old_value,
                                size_t* old_length, void* new_value, size_t new_length) {
  EnterAllocation();
  return mwje_mallctlbymib(mib, mib_length, old_value, old_length, new_value, new_length);
}

MEMWARD_EXPORT void malloc_stats_print(void (*write)(void*, const char*), void* context,
                                       const char* options) {
  EnterAllocation();
  mwje_malloc_stats_print(write, context, options);
}

}  // extern "C"
