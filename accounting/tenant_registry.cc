// The tenant registry: a name index over the tenant table.
#include "accounting/tenant_registry.h"

#include <pthread.h>
#include <string.h>

#include "alloc/arena_registry.h"
#include "base/mutex_lock.h"

namespace memward::accounting {
namespace {

constexpr uint32_t kIndexSize = 2 * kMaxTenants;  // a power of two, load at most 1/2

// Guards g_index and g_next_id. Outermost lock (see alloc/arena_registry.h).
constinit pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;
// Open addressing over tenant ids; 0 marks an empty bucket.
constinit uint16_t g_index[kIndexSize] = {};
constinit std::atomic<TenantId> g_next_id{kFirstUserTenant};


uint32_t HashName(const char* name) {
  uint32_t hash = 2166136261u;  // FNV-1a
  for (; *name != '\0'; name++) hash = (hash ^ static_cast<uint8_t>(*name)) * 16777619u;
  return hash;
}

bool IsValidName(const char* name) {
  if (name == nullptr || name[0] == '\0') return false;
  return strnlen(name, kMaxTenantName + 1) <= kMaxTenantName;
}

// Returns the bucket holding `name`, or the empty bucket where it belongs.
// REQUIRES g_registry_lock.
uint32_t FindBucket(const char* name) {
  uint32_t bucket = HashName(name) & (kIndexSize - 1);
  while (g_index[bucket] != 0 && strcmp(TenantAt(g_index[bucket]).name, name) != 0) {
    bucket = (bucket + 1) & (kIndexSize - 1);
  }
  return bucket;
}

// Gives the tenant the arena that serves its scopes. REQUIRES the lock.
bool AssignArena(TenantId id, bool dedicated) {
  Tenant& tenant = TenantAt(id);
  uint32_t slot = dedicated ? alloc::CreateDedicatedArena(id) : 0;
  tenant.dedicated_arena = slot != 0;
  if (slot == 0) slot = alloc::SharedArenaSlot();
  tenant.arena_slot.store(slot, std::memory_order_relaxed);
  return slot != 0;
}

}  // namespace

RegistryStatus RegisterTenant(const char* name, const TenantOptions& options, TenantId* id) {
  if (!IsValidName(name) || id == nullptr) return RegistryStatus::kInvalid;
  base::MutexLock lock(&g_registry_lock);
  uint32_t bucket = FindBucket(name);
  if (g_index[bucket] != 0) {
    *id = g_index[bucket];
    return RegistryStatus::kExists;
  }
  TenantId next = g_next_id.load(std::memory_order_relaxed);
  if (next >= kMaxTenants) return RegistryStatus::kFull;
  Tenant& tenant = TenantAt(next);
  memset(tenant.name, 0, sizeof(tenant.name));  // An earlier failed registration may have left a name.
  memcpy(tenant.name, name, strnlen(name, kMaxTenantName));
  tenant.soft_limit.store(options.soft_limit, std::memory_order_relaxed);
  tenant.hard_limit.store(options.hard_limit, std::memory_order_relaxed);
  tenant.enforce_hard_limit.store(options.enforce_hard_limit, std::memory_order_relaxed);
  if (!AssignArena(next, options.dedicated_arena)) return RegistryStatus::kArenaFailed;
  g_index[bucket] = static_cast<uint16_t>(next);
  tenant.registered.store(true, std::memory_order_release);
  g_next_id.store(next + 1, std::memory_order_release);
  *id = next;
  return RegistryStatus::kOk;
}

RegistryStatus FindTenant(const char* name, TenantId* id) {
  if (!IsValidName(name) || id == nullptr) return RegistryStatus::kInvalid;
  base::MutexLock lock(&g_registry_lock);
  uint32_t bucket = FindBucket(name);
  if (g_index[bucket] == 0) return RegistryStatus::kNotFound;
  *id = g_index[bucket];
  return RegistryStatus::kOk;
}

TenantId TenantCount() { return g_next_id.load(std::memory_order_acquire); }

void LockRegistryForFork() { pthread_mutex_lock(&g_registry_lock); }
void UnlockRegistryAfterFork() { pthread_mutex_unlock(&g_registry_lock); }

}  // namespace memward::accounting
