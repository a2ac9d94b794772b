// The warden's functions for memward's own code: its part in fork handling
// (preload/fork_handlers.cc) and a test for the calling thread.
#ifndef MEMWARD_ACCOUNTING_WARDEN_INTERNAL_H_
#define MEMWARD_ACCOUNTING_WARDEN_INTERNAL_H_

namespace memward::accounting {

// Takes the warden's table lock before fork and records whether the thread
// runs, so that the child starts it again. Taken before every other
// memward lock: no path holds another memward lock while it takes this one.
void LockWardenForFork();
// Releases it in the parent and in the child.
void UnlockWardenAfterFork();

// Returns whether the calling thread is the running warden thread.
bool IsWardenThread();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_WARDEN_INTERNAL_H_
