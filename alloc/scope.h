// Scopes and requests on the calling thread: what makes a tenant (and a
// request) current, so that the thread's allocations are routed and counted.
#ifndef MEMWARD_ALLOC_SCOPE_H_
#define MEMWARD_ALLOC_SCOPE_H_

#include <stdint.h>

#include "accounting/tenant.h"

namespace memward::alloc {

// The thread's scope before an entry, restored at exit. `token` names the
// entry (the thread and the nesting depth), so an exit out of order or on
// another thread is detected.
struct SavedScope {
  accounting::TenantId tenant = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
  uint32_t token = 0;
};

// Makes (`tenant`, `slot`, `generation`) current on the calling thread after
// publishing the thread's batch, and returns the previous scope. `slot` 0
// with tenant 0 is the untagged process scope.
SavedScope EnterScope(accounting::TenantId tenant, uint32_t slot, uint32_t generation);

// Restores `saved` after publishing the thread's batch. Returns false, and
// changes nothing, when `saved` is not the innermost entry of this thread. A
// saved request that has ended since is restored as its tenant's own scope.
bool ExitScope(const SavedScope& saved);

// The calling thread's current scope.
SavedScope CurrentScope();

// Publishes the calling thread's batch and flushes its thread caches.
void FlushThread();

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_SCOPE_H_
