// memward's locks across fork, taken in this order:
//   0. the admin server's connection lock, which allocates and frees while
//      it holds it (accounting/admin_server.h);
//   1. the warden's table lock;
//   2. the cgroup monitor's, which allocates while holding its mutex, so it
//      comes before every lock an allocation may take;
//   3. the profile service's, which allocates and takes the sample table's
//      snapshot lock while holding it;
//   4. the loader-call lock (accounting/loader_calls.h), which a leak
//      window takes under the profile service's lock;
//   5. running stack captures are waited for;
//   6. the sampler's control and snapshot locks;
//   7. the order of alloc/arena_registry.h: registry, arenas, thread list.
// jemalloc's own handlers then take its locks. Parent and child release them
// in the reverse order.
#include "preload/fork_handlers.h"

#include <pthread.h>

#include "accounting/admin_server.h"
#include "accounting/cgroup_monitor.h"
#include "accounting/loader_calls.h"
#include "accounting/profile_service.h"
#include "accounting/sample_table.h"
#include "accounting/sampler.h"
#include "accounting/stack_capture.h"
#include "accounting/admin_service.h"
#include "accounting/tenant_registry.h"
#include "accounting/warden.h"
#include "accounting/warden_internal.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/dirty_bound.h"
#include "alloc/engine.h"
#include "alloc/sampling.h"
#include "alloc/thread_start.h"
#include "alloc/thread_state.h"
#include "alloc/thread_cache.h"
#include "base/log.h"

namespace memward::preload {
namespace {

void Prepare() {
  accounting::LockAdminConnectionsForFork();
  accounting::LockWardenForFork();
  // The cgroup monitor allocates while holding its mutex, so its mutex
  // comes before every allocator lock.
  accounting::LockCgroupMonitorForFork();
  accounting::LockProfileForFork();
  accounting::LockLoaderCallsForFork();
  accounting::PauseCapturesForFork();
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
  accounting::ResumeCapturesAfterFork();
  accounting::UnlockLoaderCallsAfterFork();
  accounting::UnlockProfileAfterFork();
  accounting::UnlockCgroupMonitorInParent();
  accounting::UnlockWardenAfterFork();
  accounting::UnlockAdminConnectionsAfterFork();
}

// Only the forking thread lives on in the child: the other threads' batches
// are published and their caches returned before the locks are released.
void Child() {
  alloc::ResetThreadListInChild();
  alloc::UnlockArenasAfterFork();
  accounting::UnlockRegistryAfterFork();
  accounting::UnlockSampleTableAfterFork();
  accounting::UnlockSamplerAfterFork();
  accounting::ResumeCapturesInChild();
  alloc::ForgetThreadIdInChild();
  alloc::ResetDirtyBoundInChild();
  alloc::ResetArenaHoldInChild();
  accounting::UnlockLoaderCallsAfterFork();
  accounting::UnlockProfileAfterFork();
  accounting::UnlockWardenAfterFork();
  accounting::UnlockAdminConnectionsAfterFork();
  alloc::RestartDeferredFeaturesInChild();
  accounting::ResetCgroupMonitorInChild();
  accounting::ResetAdminServiceInChild();
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
