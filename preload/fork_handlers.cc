// memward's locks across fork: the warden's table lock, then the cgroup
// monitor's, then in the order of alloc/arena_registry.h (registry, arenas,
// thread list); then jemalloc's own handlers take its locks.
#include "preload/fork_handlers.h"

#include <pthread.h>

#include "accounting/cgroup_monitor.h"
#include "accounting/tenant_registry.h"
#include "accounting/warden.h"
#include "accounting/warden_internal.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/thread_cache.h"
#include "base/log.h"

namespace memward::preload {
namespace {

void Prepare() {
  accounting::LockWardenForFork();
  // The cgroup monitor allocates while holding its mutex, so its mutex
  // comes before every allocator lock.
  accounting::LockCgroupMonitorForFork();
  accounting::LockRegistryForFork();
  alloc::LockArenasForFork();
  alloc::LockThreadListForFork();
}

void Parent() {
  alloc::UnlockThreadListInParent();
  alloc::UnlockArenasAfterFork();
  accounting::UnlockRegistryAfterFork();
  accounting::UnlockCgroupMonitorInParent();
  accounting::UnlockWardenAfterFork();
}

// Only the forking thread lives on in the child: the other threads' batches
// are published and their caches returned before the locks are released.
void Child() {
  alloc::ResetThreadListInChild();
  alloc::UnlockArenasAfterFork();
  accounting::UnlockRegistryAfterFork();
  accounting::UnlockWardenAfterFork();
  alloc::RestartDeferredFeaturesInChild();
  accounting::ResetCgroupMonitorInChild();
  accounting::Warden::Get().RestartInChild();
}

void Install() {
  // mallctl initialises jemalloc, which registers its fork handlers.
  const char* version = nullptr;
  size_t length = sizeof(version);
  mwje_mallctl("version", &version, &length, nullptr, 0);
  if (pthread_atfork(Prepare, Parent, Child) != 0) {
    base::Log("pthread_atfork failed: fork from a thread-heavy program may deadlock");
  }
}

}  // namespace

void InstallForkHandlers() {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, Install);
}

}  // namespace memward::preload
