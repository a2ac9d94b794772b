// memward's own x86-64 unwinder for sampled stacks. It walks the frames
// with the DWARF CFI rules of their return addresses, kept in the
// process's frame rule cache (frame_rule_cache.h), and reads only inside
// the mapping of the thread's stack. On a hit it takes no lock and uses no
// heap memory.
//
// Lock order: a miss calls dl_iterate_phdr, which takes the dynamic
// loader's lock. The walk must therefore run with no memward lock held (the
// sampler calls it before it touches the sample table), so the loader's
// lock is never taken after one of memward's. A thread inside dlopen that
// samples an allocation already holds the loader's lock, which is
// recursive.
#ifndef MEMWARD_ACCOUNTING_CACHED_UNWINDER_H_
#define MEMWARD_ACCOUNTING_CACHED_UNWINDER_H_

#include <stdint.h>

namespace memward::accounting {

// Writes the return addresses of the caller's frames into `out`, innermost
// first (the caller's own return address first), at most `max_frames`.
// Returns their number, or -1 when a frame's rule is not supported (see
// cfi_program.h), no object or FDE contains a return address, or the
// stack's mapping is not found: the caller then captures the whole stack
// with libunwind. The walk stops early, keeping what it found, at a return
// address of 0, at a frame whose return address is undefined (the thread's
// first frame), or at a CFA that does not move up inside the stack.
// When it returns -1, `found` (unless null) receives the number of frames
// written before the frame it could not unwind.
int WalkCachedFrames(uintptr_t* out, int max_frames, int* found = nullptr);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_CACHED_UNWINDER_H_
