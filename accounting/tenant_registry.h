// Registration of tenants by name, and their limits.
//
// The registry lock guards registration and the name index; it is the
// outermost lock of memward (see alloc/arena_registry.h for the order) and is
// never taken inside malloc.
#ifndef MEMWARD_ACCOUNTING_TENANT_REGISTRY_H_
#define MEMWARD_ACCOUNTING_TENANT_REGISTRY_H_

#include <stdint.h>

#include "accounting/tenant.h"

namespace memward::accounting {

enum class RegistryStatus { kOk, kInvalid, kExists, kFull, kNotFound, kArenaFailed };

struct TenantOptions {
  uint64_t soft_limit = 0;
  uint64_t hard_limit = 0;
  bool enforce_hard_limit = false;
  bool dedicated_arena = false;
};

// Registers `name` and sets `*id`. kExists also sets `*id` to the tenant that
// has the name already.
RegistryStatus RegisterTenant(const char* name, const TenantOptions& options, TenantId* id);

RegistryStatus FindTenant(const char* name, TenantId* id);

// Returns whether `id` names a registered tenant (the process and memward
// count as registered).
inline bool IsRegistered(TenantId id) {
  if (id == kProcessTenant || id == kMemwardTenant) return true;
  return id < kMaxTenants && TenantAt(id).registered.load(std::memory_order_acquire);
}

// Number of ids handed out, including the process and memward.
TenantId TenantCount();

// Fork handlers for the registry lock: taken first, released last.
void LockRegistryForFork();
void UnlockRegistryAfterFork();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_TENANT_REGISTRY_H_
