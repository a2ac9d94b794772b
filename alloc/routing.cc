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
#include "alloc/shared_header.h"
#include "alloc/thread_cache.h"

namespace memward::alloc {
namespace {

using accounting::TenantDelta;
using accounting::TenantId;

// Size classes of small requests without alignment, in steps of 8 bytes,
// filled on the first routed allocation from nallocx; 0 means "not yet".
constexpr size_t kSmallClassLimit = 4096;
constinit std::atomic<uint32_t> g_small_classes[kSmallClassLimit / 8 + 1] = {};

size_t SizeClassOf(size_t size, int alignment_flags) {
  if (alignment_flags == 0 && size <= kSmallClassLimit) {
    std::atomic<uint32_t>& entry = g_small_classes[(size + 7) >> 3];
    uint32_t cached = entry.load(std::memory_order_relaxed);
    if (MEMWARD_LIKELY(cached != 0)) return cached;
    // Every size in the same 8-byte step has the same class.
    cached = static_cast<uint32_t>(mwje_nallocx(size == 0 ? 1 : (size + 7) & ~size_t{7}, 0));
    entry.store(cached, std::memory_order_relaxed);
    return cached;
  }
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

void MaybePublish(ThreadState& state) {
  const TenantDelta& batch = state.batch;
  if (batch.allocated_bytes + batch.freed_bytes >= accounting::kBatchBytes ||
      batch.allocations + batch.frees >= accounting::kBatchOperations) {
    PublishThreadBatch(state);
  }
}

// Raises the open request's peak from this thread's view of its live bytes:
// exact when one thread serves the request, within the batch bound otherwise.
void TrackRequestPeak(ThreadState& state) {
  accounting::TenantCounters& request = SlotAt(state.slot).request;
  int64_t live = request.live_bytes.load(std::memory_order_relaxed) + state.batch.LiveBytes();
  if (live > request.peak_bytes.load(std::memory_order_relaxed)) {
    request.peak_bytes.store(live, std::memory_order_relaxed);
  }
}

void CountAllocation(ThreadState& state, size_t charge) {
  state.batch.allocated_bytes += static_cast<int64_t>(charge);
  state.batch.allocations++;
  if (IsRequestSlot(state.slot)) TrackRequestPeak(state);
  MaybePublish(state);
}

// Allocates from the shared arena with an owner header in front.
void* AllocateShared(ThreadState& state, size_t size, size_t alignment, bool zero,
                     accounting::Tenant& tenant) {
  size_t offset = SharedHeaderOffset(alignment);
  size_t total = 0;
  if (__builtin_add_overflow(size, offset, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  size_t block_alignment = alignment > kSharedHeaderSize ? alignment : kSharedHeaderSize;
  int align_flags = MallocxAlign(block_alignment);
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
  void* pointer = static_cast<char*>(block) + offset;
  WriteSharedHeader(pointer, state.tenant, offset);
  CountAllocation(state, charge);
  return pointer;
}

void* AllocateRouted(ThreadState& state, size_t size, size_t alignment, bool zero) {
  accounting::Tenant& tenant = accounting::TenantAt(state.tenant);
  if (SlotAt(state.slot).kind == ArenaKind::kShared) {
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
void CreditFree(ThreadState& state, TenantId owner, uint32_t slot, size_t charge) {
  if (owner == state.tenant && slot == state.slot) {
    state.batch.freed_bytes += static_cast<int64_t>(charge);
    state.batch.frees++;
    MaybePublish(state);
    return;
  }
  TenantDelta delta;
  delta.freed_bytes = static_cast<int64_t>(charge);
  delta.frees = 1;
  accounting::PublishDelta(accounting::TenantAt(owner).counters, delta);
  if (IsRequestSlot(slot)) accounting::PublishDelta(SlotAt(slot).request, delta);
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
  state.batch.freed_bytes += static_cast<int64_t>(old_charge);
  state.batch.frees++;
  CountAllocation(state, new_charge);
  return result;
}

}  // namespace

void PublishThreadBatch(ThreadState& state) {
  if (state.batch.Empty()) return;
  accounting::PublishDelta(accounting::TenantAt(state.tenant).counters, state.batch);
  if (IsRequestSlot(state.slot)) accounting::PublishDelta(SlotAt(state.slot).request, state.batch);
  state.batch = TenantDelta{};
}

void* AllocateSlow(size_t size, size_t alignment, bool zero) {
  ThreadState& state = t_thread_state;
  if (state.slot == 0) {
    PrepareThread();
    return AllocateUnrouted(size, alignment, zero);
  }
  return AllocateRouted(state, size, alignment, zero);
}

void FreeOwned(void* pointer, uint16_t slot) {
  ArenaSlot& arena = SlotAt(slot);
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

size_t UsableSizeOwned(const void* pointer, uint16_t slot) {
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

void* AllocateMemwardBlock(size_t size) {
  uint32_t slot = MemwardArenaSlot();
  if (slot == 0) return nullptr;
  void* block = mwje_mallocx(size, SlotAt(slot).arena_flag | kMallocxTcacheNone);
  if (block == nullptr) return nullptr;
  TenantDelta delta;
  delta.allocated_bytes = static_cast<int64_t>(mwje_sallocx(block, 0));
  delta.allocations = 1;
  accounting::PublishDelta(accounting::TenantAt(accounting::kMemwardTenant).counters, delta);
  return block;
}

void FreeMemwardBlock(void* block, size_t size) {
  TenantDelta delta;
  delta.freed_bytes = static_cast<int64_t>(mwje_sallocx(block, 0));
  delta.frees = 1;
  mwje_dallocx(block, kMallocxTcacheNone);
  accounting::PublishDelta(accounting::TenantAt(accounting::kMemwardTenant).counters, delta);
}

}  // namespace memward::alloc
