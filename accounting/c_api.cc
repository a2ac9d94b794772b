// The C API of include/memward/memward.h over the tenant registry, scopes,
// request arenas and counters.
#include "memward/memward.h"

#include <string.h>

#include "accounting/owner_map.h"
#include "accounting/sample_table.h"
#include "accounting/pressure_service.h"
#include "accounting/pressure_state.h"
#include "accounting/reclaimer_registry.h"
#include "accounting/request_log.h"
#include "accounting/tenant.h"
#include "accounting/tenant_registry.h"
#include "alloc/allocator.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/extent_hooks.h"
#include "alloc/macros.h"
#include "alloc/purge.h"
#include "alloc/routing.h"
#include "alloc/sampling.h"
#include "alloc/scope.h"
#include "alloc/thread_cache.h"
#include "alloc/thread_state.h"
#include "base/log.h"

extern "C" void* memward_own_malloc(size_t size);

namespace {

using memward::accounting::RegistryStatus;
using memward::accounting::Tenant;
using memward::accounting::TenantAt;
using memward::accounting::TenantId;
namespace alloc = memward::alloc;
namespace accounting = memward::accounting;

// Returns MEMWARD_OK when this library's malloc is the one the process calls.
// Taking malloc's address goes through the symbol search, so it names the
// first malloc in the process; memward_own_malloc is this library's own.
// In a program built without PIE (Debian's python3), &malloc is the
// program's PLT entry, so the first call probes instead: it marks the thread,
// calls the process's malloc through that address and checks whether
// memward's slow path ran. The result never changes, so it is stored.
constinit std::atomic<int> g_allocator_check{0};  // 0 unknown, 1 memward, 2 another

bool ProbeProcessMalloc() {
  alloc::Bootstrap();
  alloc::ThreadState& state = alloc::t_thread_state;
  void* (*process_malloc)(size_t) = &malloc;
  void (*process_free)(void*) = &free;
  // The probe runs in the process scope, because inside a routed scope
  // (memward's own, when the first check comes from the admin server or
  // memward_metrics_text) malloc's slow path never reaches PrepareThread.
  // The block is untagged, so nothing is counted while the scope is away.
  const alloc::ThreadState saved = state;
  alloc::SetUnroutedScope(state, accounting::kProcessTenant, 0);
  state.probe = 1;
  alloc::ParkSampleCountdown(state);
  void* block = process_malloc(1);
  const bool ours = state.probe == 2;
  process_free(block);
  state = saved;
  return ours;
}

// The first check of the process, and every check where memward is not the
// allocator.
MEMWARD_NOINLINE int CheckAllocatorSlow() {
  int known = g_allocator_check.load(std::memory_order_acquire);
  if (known == 1) return MEMWARD_OK;
  if (known == 2) return MEMWARD_ERROR_NOT_ALLOCATOR;
  // Scope entry relies on this: a call that passes the check finds memward
  // bootstrapped.
  alloc::Bootstrap();
  void* (*process_malloc)(size_t) = &malloc;
  bool ours = process_malloc == &memward_own_malloc || ProbeProcessMalloc();
  g_allocator_check.store(ours ? 1 : 2, std::memory_order_release);
  return ours ? MEMWARD_OK : MEMWARD_ERROR_NOT_ALLOCATOR;
}

// Inline, so that scope entry and exit pay one load and one branch for it.
MEMWARD_ALWAYS_INLINE int CheckAllocator() {
  if (MEMWARD_LIKELY(g_allocator_check.load(std::memory_order_acquire) == 1)) return MEMWARD_OK;
  return CheckAllocatorSlow();
}

int ToStatus(RegistryStatus status) {
  switch (status) {
    case RegistryStatus::kOk: return MEMWARD_OK;
    case RegistryStatus::kInvalid: return MEMWARD_ERROR_INVALID;
    case RegistryStatus::kExists: return MEMWARD_ERROR_EXISTS;
    case RegistryStatus::kFull: return MEMWARD_ERROR_FULL;
    case RegistryStatus::kNotFound: return MEMWARD_ERROR_NOT_FOUND;
    case RegistryStatus::kArenaFailed: return MEMWARD_ERROR_ARENA;
  }
  return MEMWARD_ERROR_INVALID;
}

bool IsUserTenant(memward_tenant_id id) {
  return id >= accounting::kFirstUserTenant && accounting::IsRegistered(id);
}

memward_scope ToScope(const alloc::SavedScope& saved) {
  return memward_scope{saved.tenant, saved.slot, saved.generation, saved.token};
}

alloc::SavedScope FromScope(const memward_scope& scope) {
  return alloc::SavedScope{scope.tenant, scope.slot, scope.generation, scope.reserved};
}

// Returns whether a saved scope names a scope memward could have made: the
// process, or a registered tenant with its own arena or one of memward's
// request arenas.
bool IsPlausibleScope(const memward_scope& scope) {
  if (scope.slot >= alloc::kMaxArenaSlots || scope.tenant >= accounting::kMaxTenants) return false;
  if (scope.tenant == accounting::kProcessTenant) return scope.slot == 0;
  if (!IsUserTenant(scope.tenant)) return false;
  if (scope.slot == TenantAt(scope.tenant).arena_slot.load(std::memory_order_relaxed)) return true;
  const alloc::ArenaSlot& arena = alloc::SlotAt(scope.slot);
  if (arena.kind != alloc::ArenaKind::kRequest) return false;
  // A request that has ended since is restored as the tenant's own scope, but
  // an open one must be the tenant's: otherwise a forged scope would move the
  // thread into another tenant's request.
  const bool open = arena.generation.load(std::memory_order_relaxed) == scope.generation &&
                    arena.state.load(std::memory_order_acquire) == alloc::RequestState::kOpen;
  return !open || arena.tenant.load(std::memory_order_relaxed) == scope.tenant;
}

// Returns the live bytes of untagged memory: what jemalloc's own arenas (the
// automatic ones and, with oversize_threshold set, the huge arena) hold,
// since memward does not count on the untagged fast path.
int64_t ProcessLiveBytes() {
  alloc::RefreshEpoch();
  unsigned arenas = 0;
  size_t length = sizeof(arenas);
  mwje_mallctl("arenas.narenas", &arenas, &length, nullptr, 0);
  int64_t live = 0;
  for (unsigned arena = 0; arena < arenas; arena++) {
    if (alloc::IsMemwardArena(arena)) continue;
    for (const char* kind : {"small", "large"}) {
      char name[64];
      memward::base::Format(name, sizeof(name), "stats.arenas.%u.%s.allocated", arena, kind);
      live += static_cast<int64_t>(alloc::ReadSizeStatistic(name));
    }
  }
  // Sampled untagged blocks live in the sampler's arena (alloc/sampling.h).
  return live + alloc::ProcessSampledBytes();
}

void FillStats(TenantId id, memward_tenant_stats* stats) {
  const Tenant& tenant = TenantAt(id);
  const accounting::TenantCounters& counters = tenant.counters;
  memset(stats, 0, sizeof(*stats));
  stats->id = id;
  const char* name = id == accounting::kProcessTenant   ? "process"
                     : id == accounting::kMemwardTenant ? "memward"
                                                        : tenant.name;
  memcpy(stats->name, name, strnlen(name, MEMWARD_MAX_TENANT_NAME));
  stats->live_bytes = counters.live_bytes.load(std::memory_order_relaxed);
  stats->peak_bytes = counters.peak_bytes.load(std::memory_order_relaxed);
  stats->allocated_bytes = counters.allocated_bytes.load(std::memory_order_relaxed);
  stats->freed_bytes = counters.freed_bytes.load(std::memory_order_relaxed);
  stats->allocations = counters.allocations.load(std::memory_order_relaxed);
  stats->frees = counters.frees.load(std::memory_order_relaxed);
  stats->soft_limit = tenant.soft_limit.load(std::memory_order_relaxed);
  stats->hard_limit = tenant.hard_limit.load(std::memory_order_relaxed);
  stats->enforce_hard_limit = tenant.enforce_hard_limit.load(std::memory_order_relaxed);
  stats->dedicated_arena = tenant.dedicated_arena;
  stats->admitted = counters.admissions[0].load(std::memory_order_relaxed);
  stats->shed = counters.admissions[1].load(std::memory_order_relaxed);
  stats->rejected = counters.admissions[2].load(std::memory_order_relaxed);
  stats->refused_allocations = counters.refused_allocations.load(std::memory_order_relaxed);
  if (id == accounting::kProcessTenant) stats->live_bytes = ProcessLiveBytes();
}

// Adds an ended request to the log that GET /requests reads.
void LogRequest(TenantId tenant, const memward_request_summary& summary) {
  accounting::RequestRecord record;
  record.tenant = tenant;
  record.had_arena = static_cast<uint32_t>(summary.had_arena);
  record.peak_bytes = summary.peak_bytes;
  record.allocated_bytes = summary.allocated_bytes;
  record.escaped_bytes = summary.escaped_bytes;
  record.allocations = summary.allocations;
  record.frees = summary.frees;
  accounting::LogEndedRequest(record);
}

}  // namespace

extern "C" {

MEMWARD_EXPORT const char* memward_version(void) { return MEMWARD_VERSION_STRING; }

MEMWARD_EXPORT const char* memward_strerror(int status) {
  switch (status) {
    case MEMWARD_OK: return "success";
    case MEMWARD_ERROR_NOT_LOADED: return "memward is not loaded in this process";
    case MEMWARD_ERROR_NOT_ALLOCATOR:
      return "memward is loaded but another allocator serves malloc (check LD_PRELOAD order)";
    case MEMWARD_ERROR_INVALID: return "invalid argument";
    case MEMWARD_ERROR_NOT_FOUND: return "tenant not found";
    case MEMWARD_ERROR_EXISTS: return "a tenant with this name is already registered";
    case MEMWARD_ERROR_FULL: return "the tenant table is full";
    case MEMWARD_ERROR_STALE: return "the request or scope handle is no longer valid";
    case MEMWARD_ERROR_ARENA: return "jemalloc could not create an arena";
    case MEMWARD_ERROR_BUSY:
      return "the request is still current on another thread; exit its scope there first";
    case MEMWARD_ERROR_IO: return "a file could not be written (see errno)";
  }
  return "unknown memward status";
}

MEMWARD_EXPORT void memward_tenant_options_init(memward_tenant_options* options) {
  if (options != nullptr) memset(options, 0, sizeof(*options));
}

MEMWARD_EXPORT int memward_tenant_register(const char* name,
                                           const memward_tenant_options* options,
                                           memward_tenant_id* id) {
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  alloc::Bootstrap();
  accounting::TenantOptions parsed;
  if (options != nullptr) {
    parsed.soft_limit = options->soft_limit;
    parsed.hard_limit = options->hard_limit;
    parsed.enforce_hard_limit = options->enforce_hard_limit != 0;
    parsed.dedicated_arena = options->dedicated_arena != 0;
  }
  return ToStatus(accounting::RegisterTenant(name, parsed, id));
}

MEMWARD_EXPORT int memward_tenant_find(const char* name, memward_tenant_id* id) {
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  return ToStatus(accounting::FindTenant(name, id));
}

MEMWARD_EXPORT int memward_tenant_set_limits(memward_tenant_id id, uint64_t soft_limit,
                                             uint64_t hard_limit, int enforce_hard_limit) {
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (!IsUserTenant(id)) return MEMWARD_ERROR_NOT_FOUND;
  Tenant& tenant = TenantAt(id);
  tenant.soft_limit.store(soft_limit, std::memory_order_relaxed);
  tenant.hard_limit.store(hard_limit, std::memory_order_relaxed);
  tenant.enforce_hard_limit.store(enforce_hard_limit != 0, std::memory_order_relaxed);
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_scope_enter(memward_tenant_id id, memward_scope* saved) {
  if (saved == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (id != accounting::kProcessTenant && !IsUserTenant(id)) return MEMWARD_ERROR_NOT_FOUND;
  uint32_t slot = id == accounting::kProcessTenant
                      ? 0
                      : TenantAt(id).arena_slot.load(std::memory_order_relaxed);
  *saved = ToScope(alloc::EnterScope(id, slot, 0));
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_scope_exit(const memward_scope* saved) {
  if (saved == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (!IsPlausibleScope(*saved)) return MEMWARD_ERROR_INVALID;
  // Out of order, twice, or on another thread than the entry.
  if (!alloc::ExitScope(FromScope(*saved))) return MEMWARD_ERROR_INVALID;
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_request_begin(memward_tenant_id id, memward_request* request) {
  if (request == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (!IsUserTenant(id)) return MEMWARD_ERROR_NOT_FOUND;
  uint32_t generation = 0;
  uint32_t slot = alloc::AcquireRequestArena(id, &generation);
  request->tenant = id;
  request->slot = slot;
  request->generation = generation;
  uint32_t scope_slot = slot != 0 ? slot : TenantAt(id).arena_slot.load(std::memory_order_relaxed);
  request->saved = ToScope(alloc::EnterScope(id, scope_slot, generation));
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_request_enter(const memward_request* request, memward_scope* saved) {
  if (request == nullptr || saved == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (request->tenant == 0) return MEMWARD_ERROR_STALE;  // ended
  if (!IsUserTenant(request->tenant) || request->slot >= alloc::kMaxArenaSlots) {
    return MEMWARD_ERROR_INVALID;
  }
  uint32_t slot = request->slot;
  if (slot != 0) {
    alloc::ArenaSlot& arena = alloc::SlotAt(slot);
    if (arena.generation.load(std::memory_order_relaxed) != request->generation ||
        arena.state.load(std::memory_order_acquire) != alloc::RequestState::kOpen) {
      return MEMWARD_ERROR_STALE;
    }
  } else {
    slot = TenantAt(request->tenant).arena_slot.load(std::memory_order_relaxed);
  }
  *saved = ToScope(alloc::EnterScope(request->tenant, slot, request->generation));
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_request_end(memward_request* request,
                                       memward_request_summary* summary) {
  if (request == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (request->tenant == 0) return MEMWARD_ERROR_STALE;  // ended
  if (request->slot >= alloc::kMaxArenaSlots || !IsUserTenant(request->tenant)) {
    return MEMWARD_ERROR_INVALID;
  }
  memward_request_summary result = {};
  const uint32_t scope_slot =
      request->slot != 0 ? request->slot
                         : TenantAt(request->tenant).arena_slot.load(std::memory_order_relaxed);
  alloc::SavedScope current = alloc::CurrentScope();
  bool is_current = current.tenant == request->tenant && current.slot == scope_slot &&
                    current.generation == request->generation;
  if (request->slot != 0) {
    alloc::ArenaSlot& arena = alloc::SlotAt(request->slot);
    if (arena.generation.load(std::memory_order_relaxed) != request->generation ||
        arena.state.load(std::memory_order_acquire) != alloc::RequestState::kOpen) {
      return MEMWARD_ERROR_STALE;
    }
    // Another thread still inside the request may have counts of it that are
    // not published yet.
    if (arena.inside.load(std::memory_order_acquire) > (is_current ? 1u : 0u)) {
      return MEMWARD_ERROR_BUSY;
    }
    if (is_current) alloc::PublishThreadBatch(alloc::t_thread_state);
    alloc::FlushCacheForSlot(request->slot);
    const accounting::TenantCounters& counters = arena.request;
    int64_t live = counters.live_bytes.load(std::memory_order_acquire);
    result.peak_bytes = static_cast<uint64_t>(counters.peak_bytes.load(std::memory_order_relaxed));
    result.allocated_bytes = counters.allocated_bytes.load(std::memory_order_relaxed);
    result.escaped_bytes = live > 0 ? static_cast<uint64_t>(live) : 0;
    result.allocations = counters.allocations.load(std::memory_order_relaxed);
    result.frees = counters.frees.load(std::memory_order_relaxed);
    result.had_arena = 1;
  }
  // The scope is left before the arena goes back to the pool, so that the
  // next request on it does not count this thread as inside.
  if (is_current) alloc::ExitScope(FromScope(request->saved));
  if (request->slot != 0) alloc::ReleaseRequestArena(request->slot);
  LogRequest(request->tenant, result);
  request->tenant = 0;  // Marks the handle as ended.
  request->generation = 0;
  request->slot = 0;
  if (summary != nullptr) *summary = result;
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_admit(memward_tenant_id id, uint64_t expected_bytes,
                                 memward_admission* answer, memward_admission_reason* reason) {
  if (answer == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (!IsUserTenant(id)) return MEMWARD_ERROR_NOT_FOUND;
  const alloc::ThreadState& state = alloc::t_thread_state;
  int64_t unpublished = state.tenant == id ? state.batch.LiveBytes() : 0;
  accounting::AdmissionReason why;
  accounting::Admission decision = accounting::Admit(id, expected_bytes, unpublished, &why);
  *answer = static_cast<memward_admission>(decision);
  if (reason != nullptr) *reason = static_cast<memward_admission_reason>(why);
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_tenant_stats_get(memward_tenant_id id, memward_tenant_stats* stats) {
  if (stats == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  if (id >= accounting::kMaxTenants || !accounting::IsRegistered(id)) {
    return MEMWARD_ERROR_NOT_FOUND;
  }
  FillStats(id, stats);
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_tenant_stats_list(memward_tenant_stats* stats, size_t capacity,
                                             size_t* count) {
  if (count == nullptr || (stats == nullptr && capacity != 0)) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  TenantId total = accounting::TenantCount();
  size_t written = 0;
  for (TenantId id = 0; id < total && written < capacity; id++) {
    if (accounting::IsRegistered(id)) FillStats(id, &stats[written++]);
  }
  *count = total;
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_overhead_get(memward_overhead* overhead) {
  if (overhead == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  overhead->table_bytes = accounting::TenantTableResidentBytes() +
                          alloc::SlotTableResidentBytes() + accounting::OwnerMapResidentBytes();
  int64_t blocks = TenantAt(accounting::kMemwardTenant).counters.live_bytes.load(
      std::memory_order_relaxed);
  // The sample table is one large block whose pages become resident as
  // samples fill it, so it is counted by its resident pages.
  accounting::SampleTableCounts samples = accounting::ReadSampleTableCounts();
  blocks -= static_cast<int64_t>(samples.table_bytes);
  overhead->table_bytes += samples.resident_bytes;
  overhead->thread_block_bytes = blocks > 0 ? static_cast<uint64_t>(blocks) : 0;
  overhead->explicit_caches = alloc::ExplicitCacheCount();
  overhead->explicit_cache_bytes = alloc::ExplicitCacheBytes();
  overhead->total_bytes =
      overhead->table_bytes + overhead->thread_block_bytes + overhead->explicit_cache_bytes;
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_thread_flush(void) {
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  alloc::FlushThread();
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_reclaimer_register(const memward_reclaimer* reclaimer,
                                              memward_reclaimer_id* id) {
  if (reclaimer == nullptr || id == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  int status = accounting::RegisterReclaimer(*reclaimer, id);
  // A warden that cannot start has been reported. The registration is kept
  // and used if a later start succeeds.
  if (status == MEMWARD_OK) accounting::StartPressureService();
  return status;
}

MEMWARD_EXPORT int memward_reclaimer_unregister(memward_reclaimer_id id) {
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  return accounting::UnregisterReclaimer(id);
}

MEMWARD_EXPORT int memward_pressure_get(memward_pressure_level* level) {
  if (level == nullptr) return MEMWARD_ERROR_INVALID;
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  accounting::StartPressureService();
  *level = static_cast<memward_pressure_level>(accounting::CurrentPressureLevel());
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_purge(void) {
  if (int status = CheckAllocator(); status != MEMWARD_OK) return status;
  accounting::PurgeNow();
  return MEMWARD_OK;
}

}  // extern "C"
