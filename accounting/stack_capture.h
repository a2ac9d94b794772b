// Stack capture for sampled allocations: libunwind's unw_backtrace, or a walk
// of the frame-pointer chain (the sample_frame_pointers setting).
//
// libunwind is loaded with dlopen(RTLD_LOCAL) instead of being linked.
// Debian's libunwind.so.8 (1.6.2) exports a weak `backtrace` and strong
// `_Unwind_*` functions. As a dependency of a preloaded library it would join
// the global symbol scope ahead of libgcc_s for libraries loaded later, and
// change how they unwind C++ exceptions. Its static archive is not
// position-independent code, so it cannot be linked in with hidden symbols.
#ifndef MEMWARD_ACCOUNTING_STACK_CAPTURE_H_
#define MEMWARD_ACCOUNTING_STACK_CAPTURE_H_

#include <stdint.h>

namespace memward::accounting {

// Loads libunwind unless `frame_pointers` is set, bounds the memory it maps
// for its caches to `max_cache_bytes` (accounting/unwinder_memory.h), and
// warms it up on the calling thread. Returns false, selecting frame
// pointers, when libunwind cannot be loaded. Called outside malloc; later
// calls change the mode but not the bound.
bool LoadUnwinder(bool frame_pointers, uint64_t max_cache_bytes);

// Captures the calling thread's stack into `frames`, innermost first,
// leaving out memward's own frames (those in the memward_text section).
// Returns the number of frames, at most `max_frames`. Called inside malloc,
// with the sampler's countdown raised so that allocations made by the
// unwinder are not sampled. `captures` is the thread's count of captures,
// which selects the unwinder's slow path for its first ones (see
// stack_capture.cc); it stops growing at a few.
uint32_t CaptureStack(uintptr_t* frames, uint32_t max_frames, uint8_t* captures);

// Waits until no capture runs and makes later ones skip the unwinder, so a
// child is never forked while libunwind holds one of its mutexes. The fork
// handlers call these first and last.
void PauseCapturesForFork();
void ResumeCapturesAfterFork();
void ResumeCapturesInChild();

// Bytes that libunwind has mapped for its caches and not unmapped, mostly
// the trace caches of live sampling threads. In a forked child, those of the
// parent's other threads stay mapped and counted.
uint64_t UnwinderCacheBytes();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_STACK_CAPTURE_H_
