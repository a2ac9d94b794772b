// memward's per-thread state: one small initial-exec TLS block.
//
// It must stay small (a few words): a library loaded after start-up is served
// from glibc's static TLS surplus, and the embedded jemalloc already takes
// about 2.6 KiB of it. Anything larger is allocated per thread on first use.
#ifndef MEMWARD_ALLOC_THREAD_STATE_H_
#define MEMWARD_ALLOC_THREAD_STATE_H_

#include <stdint.h>

namespace memward::alloc {

struct ThreadState {
  // Non-zero sends this thread's allocations to the slow path. It starts at 1
  // (the TLS image holds it), so each thread's first allocation passes through
  // Bootstrap; the slow path clears it when nothing else needs it.
  uint32_t slow_path = 1;
};

extern thread_local ThreadState t_thread_state __attribute__((tls_model("initial-exec")));

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_THREAD_STATE_H_
