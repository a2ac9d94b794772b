// One mutex around memward's own calls into the dynamic loader outside
// malloc: dl_iterate_phdr in the symbolizer and the dlopen of libdw and
// zlib. The fork handler takes it, so that no memward thread is inside the
// loader when the process forks.
//
// Why: glibc 2.36 re-initialises the loader's dl_load_lock in a child but
// not dl_load_write_lock, which dl_iterate_phdr and dlopen take. A child
// forked while another of memward's threads was listing the loaded objects
// blocked forever at its own first listing. Stack captures inside malloc,
// which may reach the loader too, are kept out of fork by
// PauseCapturesForFork (stack_capture.h) instead.
//
// Lock order: after the profile service's lock (a leak window is closed
// under it and lists the objects) and before the sampler's and the
// allocator's locks, because code under this lock allocates.
#ifndef MEMWARD_ACCOUNTING_LOADER_CALLS_H_
#define MEMWARD_ACCOUNTING_LOADER_CALLS_H_

namespace memward::accounting {

// Holds the loader-call lock for its lifetime. Never used inside malloc.
class LoaderCallLock {
 public:
  LoaderCallLock();
  ~LoaderCallLock();
  LoaderCallLock(const LoaderCallLock&) = delete;
  LoaderCallLock& operator=(const LoaderCallLock&) = delete;
};

// The fork handler's side: taken before fork, released after it in the
// parent and in the child (where the forking thread owns it).
void LockLoaderCallsForFork();
void UnlockLoaderCallsAfterFork();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_LOADER_CALLS_H_
