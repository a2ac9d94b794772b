// Creation, pooling and recycling of memward's arenas.
#include "alloc/arena_registry.h"

#include <pthread.h>

#include "accounting/owner_map.h"
#include "alloc/arena_decay.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/extent_hooks.h"
#include "base/log.h"
#include "base/mutex_lock.h"
#include "base/resident.h"

namespace memward::alloc {

constinit ArenaSlot g_slots[kMaxArenaSlots];

namespace {

using accounting::TenantId;

// Guards slot creation, the counts below and the request pool's state
// changes from kIdle and kDraining. Lock order: see arena_registry.h.
constinit pthread_mutex_t g_arena_lock = PTHREAD_MUTEX_INITIALIZER;

// Slots are handed out in order; guarded by g_arena_lock.
constinit uint32_t g_slot_count = 1;
constinit uint32_t g_memward_slot = 0;
constinit uint32_t g_shared_slot = 0;
constinit uint32_t g_sampled_slot = 0;
constinit uint32_t g_dedicated_count = 0;
constinit uint32_t g_request_count = 0;


// Creates an arena with memward's extent hooks in a new slot. Returns the
// slot, or 0. REQUIRES g_arena_lock.
uint32_t CreateSlot(ArenaKind kind, TenantId tenant) {
  if (g_slot_count >= kMaxArenaSlots) return 0;
  extent_hooks_s* hooks = MemwardExtentHooks();
  if (hooks == nullptr || !accounting::EnsureOwnerMap()) return 0;
  uint32_t slot = g_slot_count;
  SetSlotForNewArena(slot);
  unsigned index = 0;
  size_t length = sizeof(index);
  int error = mwje_mallctl("arenas.create", &index, &length, &hooks, sizeof(hooks));
  SetSlotForNewArena(0);
  if (error != 0) {
    static base::LogLimit limit(3);
    if (limit.Allow()) base::Log("could not create an arena (mallctl error %d)", error);
    return 0;
  }
  SetSlotForArena(index, slot);
  ApplyNewArenaDecay(index, kind == ArenaKind::kSampled);
  ArenaSlot& entry = g_slots[slot];
  entry.arena_index = index;
  entry.kind = kind;
  entry.arena_flag = MallocxArena(index);
  entry.tenant.store(tenant, std::memory_order_relaxed);
  g_slot_count++;
  return slot;
}

bool IsEmpty(const ArenaSlot& slot) {
  return slot.request.live_bytes.load(std::memory_order_acquire) == 0;
}

void ResetRequestCounters(ArenaSlot& slot) {
  accounting::TenantCounters& counters = slot.request;
  counters.live_bytes.store(0, std::memory_order_relaxed);
  counters.peak_bytes.store(0, std::memory_order_relaxed);
  counters.allocated_bytes.store(0, std::memory_order_relaxed);
  counters.freed_bytes.store(0, std::memory_order_relaxed);
  counters.allocations.store(0, std::memory_order_relaxed);
  counters.frees.store(0, std::memory_order_relaxed);
  counters.refused_allocations.store(0, std::memory_order_relaxed);
}

// Moves every drained arena back to the pool, purging it first.
// REQUIRES g_arena_lock.
void RecycleDrained() {
  for (uint32_t slot = 1; slot < g_slot_count; slot++) {
    ArenaSlot& entry = g_slots[slot];
    if (entry.kind != ArenaKind::kRequest) continue;
    if (entry.state.load(std::memory_order_acquire) != RequestState::kDraining) continue;
    if (!IsEmpty(entry)) continue;
    PurgeArena(slot);
    entry.state.store(RequestState::kIdle, std::memory_order_release);
  }
}

// Returns an idle request slot, or 0. REQUIRES g_arena_lock.
uint32_t FindIdleRequestSlot() {
  for (uint32_t slot = 1; slot < g_slot_count; slot++) {
    const ArenaSlot& entry = g_slots[slot];
    if (entry.kind == ArenaKind::kRequest &&
        entry.state.load(std::memory_order_acquire) == RequestState::kIdle) {
      return slot;
    }
  }
  return 0;
}

}  // namespace

uint32_t MemwardArenaSlot() {
  base::MutexLock lock(&g_arena_lock);
  if (g_memward_slot == 0) g_memward_slot = CreateSlot(ArenaKind::kMemward, accounting::kMemwardTenant);
  return g_memward_slot;
}

uint32_t CreateDedicatedArena(TenantId tenant) {
  base::MutexLock lock(&g_arena_lock);
  auto budget = CurrentSettings().Get(base::SettingId::kDedicatedArenas);
  if (g_dedicated_count >= budget) return 0;
  uint32_t slot = CreateSlot(ArenaKind::kDedicated, tenant);
  if (slot != 0) g_dedicated_count++;
  return slot;
}

uint32_t SampledArenaSlot() {
  base::MutexLock lock(&g_arena_lock);
  if (g_sampled_slot == 0) {
    g_sampled_slot = CreateSlot(ArenaKind::kSampled, accounting::kMemwardTenant);
  }
  return g_sampled_slot;
}

uint32_t SharedArenaSlot() {
  base::MutexLock lock(&g_arena_lock);
  if (g_shared_slot == 0) g_shared_slot = CreateSlot(ArenaKind::kShared, 0);
  return g_shared_slot;
}

uint32_t AcquireRequestArena(TenantId tenant, uint32_t* generation) {
  base::MutexLock lock(&g_arena_lock);
  RecycleDrained();
  uint32_t slot = FindIdleRequestSlot();
  if (slot == 0 && g_request_count < CurrentSettings().Get(base::SettingId::kRequestArenas)) {
    slot = CreateSlot(ArenaKind::kRequest, tenant);
    if (slot != 0) g_request_count++;
  }
  if (slot == 0) return 0;
  ArenaSlot& entry = g_slots[slot];
  ResetRequestCounters(entry);
  entry.tenant.store(tenant, std::memory_order_relaxed);
  *generation = entry.generation.fetch_add(1, std::memory_order_relaxed) + 1;
  entry.state.store(RequestState::kOpen, std::memory_order_release);
  return slot;
}

void ReleaseRequestArena(uint32_t slot) {
  base::MutexLock lock(&g_arena_lock);
  ArenaSlot& entry = g_slots[slot];
  if (IsEmpty(entry)) {
    PurgeArena(slot);
    entry.state.store(RequestState::kIdle, std::memory_order_release);
  } else {
    entry.state.store(RequestState::kDraining, std::memory_order_release);
  }
}

size_t SlotTableResidentBytes() { return base::ResidentBytes(g_slots, sizeof(g_slots)); }

void PurgeArena(uint32_t slot) {
  char name[64];
  base::Format(name, sizeof(name), "arena.%u.purge", g_slots[slot].arena_index);
  mwje_mallctl(name, nullptr, nullptr, nullptr, 0);
}

RequestPoolCounts CountRequestArenas() {
  base::MutexLock lock(&g_arena_lock);
  RequestPoolCounts counts;
  for (uint32_t slot = 1; slot < g_slot_count; slot++) {
    const ArenaSlot& entry = g_slots[slot];
    if (entry.kind != ArenaKind::kRequest) continue;
    switch (entry.state.load(std::memory_order_acquire)) {
      case RequestState::kIdle: counts.idle++; break;
      case RequestState::kOpen: counts.open++; break;
      case RequestState::kDraining: counts.draining++; break;
    }
  }
  return counts;
}

uint32_t ListOpenRequests(OpenRequestInfo* out, uint32_t capacity) {
  base::MutexLock lock(&g_arena_lock);
  uint32_t count = 0;
  for (uint32_t slot = 1; slot < g_slot_count; slot++) {
    const ArenaSlot& entry = g_slots[slot];
    if (entry.kind != ArenaKind::kRequest) continue;
    if (entry.state.load(std::memory_order_acquire) != RequestState::kOpen) continue;
    if (count < capacity) {
      OpenRequestInfo& info = out[count];
      info.slot = slot;
      info.generation = entry.generation.load(std::memory_order_relaxed);
      info.tenant = entry.tenant.load(std::memory_order_relaxed);
      info.live_bytes = entry.request.live_bytes.load(std::memory_order_relaxed);
      info.peak_bytes = entry.request.peak_bytes.load(std::memory_order_relaxed);
      info.allocated_bytes = entry.request.allocated_bytes.load(std::memory_order_relaxed);
      info.allocations = entry.request.allocations.load(std::memory_order_relaxed);
    }
    count++;
  }
  return count;
}

void LockArenasForFork() { pthread_mutex_lock(&g_arena_lock); }
void UnlockArenasAfterFork() { pthread_mutex_unlock(&g_arena_lock); }

}  // namespace memward::alloc
