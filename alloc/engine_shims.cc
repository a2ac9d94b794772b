// Replacements for the few libc calls that the embedded jemalloc makes through
// renamed symbols (alloc/jemalloc_symbols.txt).
//
// - dlsym: jemalloc 5.3 looks up pthread_create with dlsym(RTLD_NEXT) while it
//   initialises, inside the first malloc. dlsym can allocate, so memward hands
//   it libc's pthread_create directly.
// - mmap, munmap, madvise, mprotect: a failed call sets errno, and jemalloc can
//   make these calls inside free (purging on decay) or in an allocation that
//   then succeeds. free must never change errno, and a successful malloc should
//   not either, so these wrappers restore it. jemalloc reads no errno from them
//   except for its own messages, and reports failures through return values.
// - madvise also fails MADV_DONTNEED while a new thread creates its jemalloc
//   cache, so that jemalloc zeroes the recycled cache stack with memset
//   instead of dropping its pages (alloc/thread_start.h). jemalloc 5.3
//   checks the result of every purge and treats pages whose purge failed as
//   not zeroed. jemalloc may also decay an arena inside that window, on an
//   allocation's decay tick. That purge falls back from the failed
//   MADV_DONTNEED to MADV_FREE on the same range, which leaves the pages
//   resident until the system runs short of memory. The wrapper turns that
//   MADV_FREE into MADV_DONTNEED, so the purge releases the pages.
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc/growth_signal.h"
#include "alloc/thread_start.h"

extern "C" {

void* mwje_dlsym(void* handle, const char* symbol) {
  if (strcmp(symbol, "pthread_create") == 0) return reinterpret_cast<void*>(&pthread_create);
  return nullptr;
}

void* mwje_mmap(void* address, size_t length, int protection, int flags, int fd, off_t offset) {
  int saved_errno = errno;
  void* result = mmap(address, length, protection, flags, fd, offset);
  if (result != MAP_FAILED) memward::alloc::NoteHeapGrowth(length);
  errno = saved_errno;
  return result;
}

int mwje_munmap(void* address, size_t length) {
  int saved_errno = errno;
  int result = munmap(address, length);
  errno = saved_errno;
  return result;
}

namespace {

// The range of the MADV_DONTNEED that this thread failed last, while it
// zeroed with memset.
struct RejectedRange {
  void* address;
  size_t length;
};
constinit thread_local RejectedRange t_rejected __attribute__((tls_model("initial-exec"))) = {
    nullptr, 0};

}  // namespace

int mwje_madvise(void* address, size_t length, int advice) {
  if (memward::alloc::ZeroingWithMemset()) {
    if (advice == MADV_DONTNEED) {
      t_rejected = RejectedRange{address, length};
      return -1;
    }
    // A purge's fallback after its rejected MADV_DONTNEED. The pages are
    // free extents, so they can be released at once.
    if (advice == MADV_FREE && t_rejected.address == address && t_rejected.length == length) {
      advice = MADV_DONTNEED;
    }
  }
  int saved_errno = errno;
  int result = madvise(address, length, advice);
  errno = saved_errno;
  return result;
}

int mwje_mprotect(void* address, size_t length, int protection) {
  int saved_errno = errno;
  int result = mprotect(address, length, protection);
  errno = saved_errno;
  return result;
}

}  // extern "C"
