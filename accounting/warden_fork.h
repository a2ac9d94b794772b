// The warden's part in fork handling (preload/fork_handlers.cc).
#ifndef MEMWARD_ACCOUNTING_WARDEN_FORK_H_
#define MEMWARD_ACCOUNTING_WARDEN_FORK_H_

namespace memward::accounting {

// Takes the warden's table lock before fork and records whether the thread
// runs, so that the child starts it again. Taken before every other
// memward lock: no path holds another memward lock while it takes this one.
void LockWardenForFork();
// Releases it in the parent and in the child.
void UnlockWardenAfterFork();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_WARDEN_FORK_H_
