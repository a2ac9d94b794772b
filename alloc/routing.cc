// Routed allocation, owned frees and the per-thread batches.
#include "alloc/routing.h"

#include <errno.h>
#include <string.h>

#include <atomic>

#include "accounting/owner_map.h"
#include "accounting/tenant.h"
#include "alloc/allocator.h"
#include "alloc/arena_registry.h"
#include "alloc/engine.h"
#include "alloc/sampling.h"
#include "alloc/growth_signal.h"
#include "alloc/page_tags.h"
#include "alloc/shared_header.h"
#include "alloc/thread_cache.h"

namespace memward::alloc {
namespace {

using accounting::TenantDelta;
using accounting::TenantId;

// Returns the usable size mallocx would give; used on the uncached paths,
// where jemalloc's own work dominates (the cached path reads g_size_classes).
size_t SizeClassOf(size_t size, int alignment_flags) {
  return mwje_nallocx(size == 0 ? 1 : size, alignment_flags);
}

int AlignmentFlags(size_t alignment) { return alignment == 0 ? 0 : MallocxAlign(alignment); }

bool IsRequestSlot(uint32_t slot) {
  return slot != 0 && SlotAt(slot).kind == ArenaKind::kRequest;
}

void* Refuse(accounting::Tenant& tenant) {
  tenant.counters.refused_allocations.fetch_add(1, std::memory_order_relaxed);
  errno = ENOMEM;
  return nullptr;
}

constexpr int64_t kOperationWeight = accounting::kBatchBytes / accounting::kBatchOperations;

MEMWARD_ALWAYS_INLINE void SpendCountdown(ThreadState& state, size_t charge) {
  state.publish_countdown -= static_cast<int64_t>(charge) + kOperationWeight;
  if (MEMWARD_UNLIKELY(state.publish_countdown <= 0)) PublishThreadBatch(state);
}

MEMWARD_ALWAYS_INLINE void CountAllocation(ThreadState& state, size_t charge) {
  state.batch.AddAllocation(static_cast<int64_t>(charge));
  SpendCountdown(state, charge);
}

// Leaves the thread's scope for good: jemalloc served a routed request from
// another arena, which jemalloc 5.3 does once it has torn down the thread's
// state (in pthread key destructors that run after its own). The block the
// caller got is then untagged memory, returned without header or charge.
}  // namespace

MEMWARD_NOINLINE void DetachFromScope(ThreadState& state) {
  PublishThreadBatch(state);
  if (state.request_scope) SlotAt(state.slot).inside.fetch_sub(1, std::memory_order_release);
  SetUnroutedScope(state, 0, 0);
}

namespace {

// Returns whether jemalloc took `block` from the scope's own arena.
MEMWARD_ALWAYS_INLINE bool FromScopeArena(const ThreadState& state, const void* block) {
  return accounting::OwnerSlotOf(block) == state.slot;
}

// Allocates from the shared arena with an owner header in front.
void* AllocateShared(ThreadState& state, size_t size, size_t alignment, bool zero,
                     accounting::Tenant& tenant) {
  size_t offset = SharedHeaderOffset(alignment);
  size_t total = 0;
  // The header stores the offset (the alignment) in 32 bits.
  if (offset > UINT32_MAX || __builtin_add_overflow(size, offset, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  // Blocks of 32 bytes and more are 16-byte aligned already; asking jemalloc
  // for that alignment would send large blocks around its thread cache.
  int align_flags = alignment > kSharedHeaderSize ? MallocxAlign(alignment) : 0;
  size_t charge = SizeClassOf(total, align_flags);
  if (charge == 0) {
    errno = ENOMEM;
    return nullptr;
  }
  if (accounting::WouldPassHardLimit(tenant, state.batch.LiveBytes(), charge)) {
    return Refuse(tenant);
  }
  void* block = mwje_mallocx(total, state.arena_flags | align_flags | (zero ? kMallocxZero : 0));
  if (block == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  if (MEMWARD_UNLIKELY(!FromScopeArena(state, block))) {
    DetachFromScope(state);
    return block;
  }
  ClearBlockTag(block);
  void* pointer = static_cast<char*>(block) + offset;
  WriteSharedHeader(pointer, state.tenant, offset);
  CountAllocation(state, charge);
  return pointer;
}

// The cached path: a small request with malloc's natural alignment, served
// from the thread's SlotCache. Returns nullptr with errno set on failure.
MEMWARD_ALWAYS_INLINE void* AllocateCached(ThreadState& state, size_t request, bool shared) {
  uint32_t size_class = g_size_classes.index_by_step[(request + 7) >> 3];
  size_t charge = g_size_classes.size_of[size_class];
  accounting::Tenant& tenant = accounting::TenantAt(state.tenant);
  if (accounting::WouldPassHardLimit(tenant, state.batch.LiveBytes(), charge)) {
    return Refuse(tenant);
  }
  CacheBin& bin = state.cache->bins[size_class];
  void* block = nullptr;
  if (MEMWARD_LIKELY(bin.count != 0)) {
    block = bin.objects[--bin.count];
  } else {
    block = RefillAndTake(state.cache, size_class);
    if (MEMWARD_UNLIKELY(block == nullptr)) {
      errno = ENOMEM;
      return nullptr;
    }
    if (MEMWARD_UNLIKELY(!FromScopeArena(state, block))) {
      DetachFromScope(state);
      return block;
    }
  }
  void* pointer = block;
  if (shared) {
    pointer = static_cast<char*>(block) + kSharedHeaderSize;
    WriteNaturalHeader(pointer, state.header_word0, state.header_seed);
  }
  CountAllocation(state, charge);
  return pointer;
}

void* AllocateRouted(ThreadState& state, size_t size, size_t alignment, bool zero) {
  const bool shared = state.shared_scope;
  if (MEMWARD_LIKELY(alignment == 0 && !zero && state.cache != nullptr)) {
    size_t request = shared ? size + kSharedHeaderSize : size;
    if (request <= kCachedMaxSize && request >= size) return AllocateCached(state, request, shared);
  }

  accounting::Tenant& tenant = accounting::TenantAt(state.tenant);
  if (shared) {
    return AllocateShared(state, size, alignment, zero, tenant);
  }

  int align_flags = AlignmentFlags(alignment);
  size_t charge = SizeClassOf(size, align_flags);
  if (MEMWARD_UNLIKELY(charge == 0)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (accounting::WouldPassHardLimit(tenant, state.batch.LiveBytes(), charge)) {
    return Refuse(tenant);
  }

  void* pointer = mwje_mallocx(size == 0 ? 1 : size,
                               state.arena_flags | align_flags | (zero ? kMallocxZero : 0));
  if (pointer == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  if (MEMWARD_UNLIKELY(!FromScopeArena(state, pointer))) {
    DetachFromScope(state);
    return pointer;
  }
  ClearBlockTag(pointer);
  CountAllocation(state, charge);
  return pointer;
}

void* AllocateUnrouted(size_t size, size_t alignment, bool zero) {
  if (alignment != 0) {
    void* pointer = mwje_mallocx(size == 0 ? 1 : size, MallocxAlign(alignment) |
                                                            (zero ? kMallocxZero : 0));
    if (pointer == nullptr) errno = ENOMEM;
    return pointer;
  }
  return zero ? mwje_calloc(1, size) : mwje_malloc(size);
}

// Credits a free of `charge` bytes owned by `owner` in `slot`: into the
// thread's batch when it is the thread's own scope, else straight to the
// shared counters.
MEMWARD_ALWAYS_INLINE void CreditFree(ThreadState& state, TenantId owner, uint32_t slot,
                                      size_t charge) {
  if (MEMWARD_LIKELY(owner == state.tenant && slot == state.slot)) {
    state.batch.AddFree(static_cast<int64_t>(charge));
    SpendCountdown(state, charge);
    return;
  }
  TenantDelta delta;
  delta.AddFree(static_cast<int64_t>(charge));
  accounting::PublishDelta(accounting::TenantAt(owner).counters, delta);
  if (IsRequestSlot(slot)) accounting::PublishDelta(SlotAt(slot).request, delta);
}

// Frees a block owned by another slot than the thread's scope, or one that
// the thread's SlotCache does not take (large or over-aligned).
MEMWARD_NOINLINE void FreeOwnedUncached(void* pointer, uint16_t slot) {
  ArenaSlot& arena = SlotAt(slot);
  if (arena.kind == ArenaKind::kSampled) return FreeSampledBlock(pointer);
  void* block = pointer;
  TenantId owner = arena.tenant.load(std::memory_order_relaxed);
  if (arena.kind == ArenaKind::kShared) {
    const SharedHeader& header = ReadSharedHeader(pointer);
    owner = header.tenant;
    block = static_cast<char*>(pointer) - header.offset;
  }
  size_t charge = mwje_sallocx(block, 0);
  mwje_dallocx(block, FreeFlagsForSlot(slot));
  CreditFree(t_thread_state, owner, slot, charge);
}

// Resizes a block of the scope's own arena in place where jemalloc can,
// counted as a free of the old block and an allocation of the new one.
void* ResizeInScope(ThreadState& state, void* pointer, size_t size) {
  accounting::Tenant& tenant = accounting::TenantAt(state.tenant);
  size_t old_charge = mwje_sallocx(pointer, 0);
  size_t new_charge = SizeClassOf(size, 0);
  if (new_charge == 0) {
    errno = ENOMEM;
    return nullptr;
  }
  if (new_charge > old_charge &&
      accounting::WouldPassHardLimit(tenant, state.batch.LiveBytes(), new_charge - old_charge)) {
    return Refuse(tenant);
  }
  void* result = mwje_rallocx(pointer, size, state.arena_flags);
  if (result == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  state.batch.AddFree(static_cast<int64_t>(old_charge));
  ClearBlockTag(result);
  if (MEMWARD_UNLIKELY(!FromScopeArena(state, result))) {
    DetachFromScope(state);
    return result;
  }
  CountAllocation(state, new_charge);
  return result;
}

}  // namespace

// Not inlined, not even in part, so that the fast paths end in a tail call
// to it and save no registers.
__attribute__((noinline, noclone)) void PublishThreadBatch(ThreadState& state) {
  state.publish_countdown = accounting::kBatchBytes;
  if (state.batch.Empty()) return;
  if (state.batch.live > 0) NoteHeapGrowth(static_cast<size_t>(state.batch.live));
  accounting::PublishDelta(accounting::TenantAt(state.tenant).counters, state.batch);
  if (state.request_scope) accounting::PublishDelta(SlotAt(state.slot).request, state.batch);
  state.batch = TenantDelta{};
}

// Publishes the batch that `pointer`'s allocation filled, as a tail call.
MEMWARD_NOINLINE void* PublishAndReturn(void* pointer) {
  PublishThreadBatch(t_thread_state);
  return pointer;
}

// Every call this path makes is a tail call, so the compiler saves no
// registers: a bin pop, the owner header for shared arenas, and the batch.
void* AllocateSlowMalloc(size_t size) {
  ThreadState& state = t_thread_state;
  SlotCache* cache = state.cache;
  const size_t header = state.shared_scope ? kSharedHeaderSize : 0;
  if (MEMWARD_UNLIKELY(cache == nullptr || size > kCachedMaxSize - header)) {
    return AllocateSlow(size, 0, false);
  }
  if (MEMWARD_UNLIKELY(state.tenant_record->enforce_hard_limit.load(std::memory_order_relaxed))) {
    return AllocateSlow(size, 0, false);
  }
  const size_t request = size + header;
  const uint32_t size_class = g_size_classes.index_by_step[(request + 7) >> 3];
  CacheBin& bin = cache->bins[size_class];
  if (MEMWARD_UNLIKELY(bin.count == 0)) return AllocateSlow(size, 0, false);
  char* pointer = static_cast<char*>(bin.objects[--bin.count]) + header;
  if (header != 0) WriteNaturalHeader(pointer, state.header_word0, state.header_seed);
  const size_t charge = g_size_classes.size_of[size_class];
  state.batch.AddAllocation(static_cast<int64_t>(charge));
  state.publish_countdown -= static_cast<int64_t>(charge) + kOperationWeight;
  if (MEMWARD_UNLIKELY(state.publish_countdown <= 0)) return PublishAndReturn(pointer);
  return pointer;
}

void* AllocateSlow(size_t size, size_t alignment, bool zero) {
  ThreadState& state = t_thread_state;
  if (state.slot == 0) {
    PrepareThread();
    return AllocateUnrouted(size, alignment, zero);
  }
  return AllocateRouted(state, size, alignment, zero);
}

// Puts `block` of class `size_class` into the scope's cache and credits the
// free.
MEMWARD_ALWAYS_INLINE void CacheFreedBlock(ThreadState& state, void* block, uint32_t size_class,
                                           TenantId owner, uint16_t slot) {
  CacheBin& bin = state.cache->bins[size_class];
  if (MEMWARD_LIKELY(bin.count < g_size_classes.limit_of[size_class])) {
    bin.objects[bin.count++] = block;
  } else {
    SpillAndPut(state.cache, size_class, block);
  }
  CreditFree(state, owner, slot, g_size_classes.size_of[size_class]);
}

void FreeOwnedSized(void* pointer, uint16_t slot, size_t size) noexcept {
  ThreadState& state = t_thread_state;
  const size_t header = state.shared_scope ? kSharedHeaderSize : 0;
  if (MEMWARD_UNLIKELY(slot != state.cached_slot || size > kCachedMaxSize - header)) {
    return FreeOwned(pointer, slot);
  }
  TenantId owner = state.tenant;
  if (header != 0) {
    const SharedHeader& shared = ReadSharedHeader(pointer);
    if (shared.offset != kSharedHeaderSize) return FreeOwnedUncached(pointer, slot);
    owner = shared.tenant;
  }
  uint32_t size_class = g_size_classes.index_by_step[(size + header + 7) >> 3];
  CacheFreedBlock(state, static_cast<char*>(pointer) - header, size_class, owner, slot);
}

// The common case is a free in the scope that allocated the block: the owner
// is the scope's tenant (or the shared header's), and the block goes to the
// thread's SlotCache.
void FreeOwned(void* pointer, uint16_t slot) noexcept {
  ThreadState& state = t_thread_state;
  if (MEMWARD_UNLIKELY(slot != state.cached_slot)) {
    return FreeOwnedUncached(pointer, slot);
  }
  void* block = pointer;
  TenantId owner = state.tenant;
  if (state.shared_scope) {
    const SharedHeader& header = ReadSharedHeader(pointer);
    if (header.offset != kSharedHeaderSize) return FreeOwnedUncached(pointer, slot);
    owner = header.tenant;
    block = static_cast<char*>(pointer) - kSharedHeaderSize;
  }
  size_t charge = mwje_sallocx(block, 0);
  if (MEMWARD_UNLIKELY(charge > kCachedMaxSize)) {
    mwje_dallocx(block, state.arena_flags);
    CreditFree(state, owner, slot, charge);
    return;
  }
  // `charge` is a size class, so its step indexes its own class.
  CacheFreedBlock(state, block, g_size_classes.index_by_step[charge >> 3], owner, slot);
}

// The common free: a block of the thread's own scope whose page is tagged,
// pushed onto its bin. Every call it makes is a tail call, so it saves no
// registers; anything else goes to FreeOwned.
void FreeOwnedEntry(void* pointer, uint32_t entry) noexcept {
  ThreadState& state = t_thread_state;
  const uint16_t slot = accounting::SlotOfEntry(entry);
  if (MEMWARD_UNLIKELY(slot != state.cached_slot)) return FreeOwned(pointer, slot);
  char* block = static_cast<char*>(pointer);
  if (state.shared_scope) {
    if (MEMWARD_UNLIKELY(!HasNaturalHeader(pointer, state.header_word0, state.header_seed))) {
      return FreeOwned(pointer, slot);
    }
    block -= kSharedHeaderSize;
  }
  const uint8_t tag = accounting::PageTagOf(entry, block);
  if (MEMWARD_UNLIKELY(tag == 0)) return FreeOwned(pointer, slot);
  const uint32_t size_class = tag - 1u;
  CacheBin& bin = state.cache->bins[size_class];
  if (MEMWARD_UNLIKELY(bin.count >= g_size_classes.limit_of[size_class])) {
    return FreeOwned(pointer, slot);
  }
  bin.objects[bin.count++] = block;
  const size_t charge = g_size_classes.size_of[size_class];
  state.batch.AddFree(static_cast<int64_t>(charge));
  state.publish_countdown -= static_cast<int64_t>(charge) + kOperationWeight;
  if (MEMWARD_UNLIKELY(state.publish_countdown <= 0)) return PublishThreadBatch(state);
}

size_t UsableSizeOwned(const void* pointer, uint16_t slot) {
  if (SlotAt(slot).kind == ArenaKind::kSampled) return SampledUsableSize(pointer);
  if (SlotAt(slot).kind != ArenaKind::kShared) return mwje_sallocx(pointer, 0);
  const SharedHeader& header = ReadSharedHeader(pointer);
  return mwje_sallocx(static_cast<const char*>(pointer) - header.offset, 0) - header.offset;
}

void* ReallocateSlow(void* pointer, size_t size, uint16_t slot) {
  ThreadState& state = t_thread_state;
  if (slot == 0 && state.slot == 0) {
    PrepareThread();
    void* result = mwje_realloc(pointer, size);
    if (result == nullptr) errno = ENOMEM;
    return result;
  }
  if (slot != 0 && slot == state.slot && SlotAt(slot).kind != ArenaKind::kShared) {
    return ResizeInScope(state, pointer, size);
  }
  // Across arenas (or tenants) the block moves: allocate in the current
  // scope, copy, and free the old block with credit to its owner.
  size_t old_size = slot == 0 ? mwje_malloc_usable_size(pointer) : UsableSizeOwned(pointer, slot);
  void* result = AllocateSlow(size, 0, false);
  if (result == nullptr) return nullptr;
  memcpy(result, pointer, old_size < size ? old_size : size);
  if (slot == 0) {
    mwje_free(pointer);
  } else {
    FreeOwned(pointer, slot);
  }
  return result;
}

void* AllocateMemwardBlock(size_t size, bool zero) {
  uint32_t slot = MemwardArenaSlot();
  if (slot == 0) return nullptr;
  void* block =
      mwje_mallocx(size, SlotAt(slot).arena_flag | kMallocxTcacheNone | (zero ? kMallocxZero : 0));
  if (block == nullptr) return nullptr;
  ClearBlockTag(block);
  TenantDelta delta;
  delta.AddAllocation(static_cast<int64_t>(mwje_sallocx(block, 0)));
  accounting::PublishDelta(accounting::TenantAt(accounting::kMemwardTenant).counters, delta);
  return block;
}

void FreeMemwardBlock(void* block, size_t size) {
  TenantDelta delta;
  delta.AddFree(static_cast<int64_t>(mwje_sallocx(block, 0)));
  mwje_dallocx(block, kMallocxTcacheNone);
  accounting::PublishDelta(accounting::TenantAt(accounting::kMemwardTenant).counters, delta);
}

}  // namespace memward::alloc
