// Fork handling for memward's own locks.
#ifndef MEMWARD_PRELOAD_FORK_HANDLERS_H_
#define MEMWARD_PRELOAD_FORK_HANDLERS_H_

namespace memward::preload {

// Registers memward's pthread_atfork handlers once. jemalloc registers its
// own handlers when it initialises, which this function forces first; since
// prepare handlers run in reverse order of registration and the others in
// order, memward's locks are taken before jemalloc's and released after them.
void InstallForkHandlers();

}  // namespace memward::preload

#endif  // MEMWARD_PRELOAD_FORK_HANDLERS_H_
