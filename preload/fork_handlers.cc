// memward's locks across fork: the warden's table lock, then the order of
// alloc/arena_registry.h (registry, arenas, thread list); then jemalloc's own
// handlers take its locks.
#include "preload/fork_handlers.h"

#include <pthread.h>

#include "accounting/admin_service.h"
#include "accounting/tenant_registry.h"
#include "accounting/warden.h"
#include "accounting/warden_fork.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/thread_cache.h"
#include "base/log.h"

namespace memward::preload {
namespace {

void Prepare() {
  accounting::LockWardenForFork();
  accounting::LockRegistryForFork();
  alloc::LockArenasForFork();
  alloc::LockThreadListForFork();
}

void Parent() {
  alloc::UnlockThreadListInParent();
  alloc::UnlockArenasAfterFork();
  accounting::UnlockRegistryAfterFork();
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
  accounting::Warden::Get().RestartInChild();
  // After the warden's restart, so that the admin server's watch is removed
  // from the child's new epoll set, not from the one shared with the parent.
  accounting::ResetAdminServiceInChild();
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
