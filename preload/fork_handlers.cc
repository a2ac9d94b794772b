// memward's locks across fork: the warden's table lock, the cgroup
// monitor's, the profile service's, the sampler's control and snapshot
// locks, then in the order of alloc/arena_registry.h (registry, arenas,
// thread list); then jemalloc's own handlers take its locks.
#include "preload/fork_handlers.h"

#include <pthread.h>

#include "accounting/cgroup_monitor.h"
#include "accounting/profile_service.h"
#include "accounting/sample_table.h"
#include "accounting/sampler.h"
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
  // The profile service takes the sample table's snapshot lock under its
  // own, and allocates under it.
  accounting::LockProfileForFork();
  accounting::LockSamplerForFork();
  accounting::LockSampleTableForFork();
  accounting::LockRegistryForFork();
  alloc::LockArenasForFork();
  alloc::LockThreadListForFork();
}

void Parent() {
  alloc::UnlockThreadListInParent();
  alloc::UnlockArenasAfterFork();
  accounting::UnlockRegistryAfterFork();
  accounting::UnlockSampleTableAfterFork();
  accounting::UnlockSamplerAfterFork();
  accounting::UnlockProfileAfterFork();
  accounting::UnlockCgroupMonitorInParent();
  accounting::UnlockWardenAfterFork();
}

// Only the forking thread lives on in the child: the other threads' batches
// are published and their caches returned before the locks are released.
void Child() {
  alloc::ResetThreadListInChild();
  alloc::UnlockArenasAfterFork();
  accounting::UnlockRegistryAfterFork();
  accounting::UnlockSampleTableAfterFork();
  accounting::UnlockSamplerAfterFork();
  accounting::UnlockProfileAfterFork();
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
