// Stack capture for sampled allocations: memward's cached unwinder
// (cached_unwinder.h), libunwind's unw_backtrace, or a walk of the
// frame-pointer chain, as the sample_unwinder setting selects.
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

enum class Unwinder : uint8_t {
  kCached,         // memward's cached CFI walk, libunwind for the rest once loaded
  kLibunwind,      // unw_backtrace
  kFramePointers,  // the rbp chain; needs -fno-omit-frame-pointer
};

// Parses a value of the sample_unwinder setting; returns false for an
// unknown name.
bool ParseUnwinder(const char* name, Unwinder& unwinder);

// Loads libunwind for kLibunwind, maps the frame rule cache for kCached,
// bounds the memory of both caches to `max_cache_bytes`
// (accounting/unwinder_memory.h), and reads the calling thread's stack
// bounds or warms libunwind up. Returns the unwinder in use: kFramePointers
// when libunwind cannot be loaded, kLibunwind when the rule cache cannot be
// mapped. Called outside malloc; later calls change the mode but not the
// bound.
//
// For kCached, libunwind is loaded later, by LoadFallbackLibunwind, once a
// walk has met a frame whose rule the cached unwinder does not support.
// Until then such a stack keeps only the frames above that frame, and
// CachedUnwinderCounts::truncated_stacks counts it.
Unwinder LoadUnwinder(Unwinder requested, uint64_t max_cache_bytes);

// Returns whether a cached walk has met a frame it could not unwind while
// libunwind was not loaded.
bool LibunwindNeeded();

// Loads libunwind as the cached unwinder's fallback, with the bound that
// LoadUnwinder was given; returns whether it is loaded. Called outside
// malloc, with the sampler's control lock held (LoadUnwinderFallbackIfNeeded
// in sampler.h), which the fork handlers take, so no child is forked inside
// this dlopen.
// NOTE: a host that installs a seccomp filter after start-up and blocks
// openat(2) is killed here if its stacks need the fallback. Such hosts can
// set sample_unwinder=libunwind to load it at start-up.
bool LoadFallbackLibunwind();

// Captures the calling thread's stack into `frames`, innermost first,
// leaving out memward's own frames (those in the memward_text section).
// Returns the number of frames, at most `max_frames`, and stores their
// HashStack (stack_hash.h) in `hash`. Called inside malloc, with the
// sampler's countdown raised so that allocations made by the unwinder are
// not sampled. `captures` is the thread's count of captures, which selects
// the unwinder's slow path for its first ones (see stack_capture.cc); it
// stops growing at a few.
uint32_t CaptureStack(uintptr_t* frames, uint32_t max_frames, uint8_t* captures, uint64_t* hash);

// CaptureStack with the given unwinder instead of the selected one, for
// tests and benchmarks that compare them. kCached falls back to libunwind
// as CaptureStack does, and needs LoadUnwinder(kCached) to have succeeded.
// kLibunwind needs libunwind loaded (LoadUnwinder or LoadFallbackLibunwind).
uint32_t CaptureStackWith(Unwinder unwinder, uintptr_t* frames, uint32_t max_frames,
                          uint8_t* captures, uint64_t* hash);

// Waits until no capture runs and makes later ones skip the unwinder, so a
// child is never forked while libunwind holds one of its mutexes. The fork
// handlers call these first and last.
void PauseCapturesForFork();
void ResumeCapturesAfterFork();
void ResumeCapturesInChild();

// Bytes that the unwinders have mapped for their caches and not unmapped:
// the frame rule cache's table, and libunwind's caches, mostly the trace
// caches of live sampling threads. In a forked child, those of the parent's
// other threads stay mapped and counted.
uint64_t UnwinderCacheBytes();

struct CachedUnwinderCounts {
  uint64_t rule_entries = 0;   // entries filled in the frame rule table in use
  uint64_t rule_home_entries = 0;  // that table's home entries, 0 without one
  uint64_t rule_misses = 0;    // lookups of an address that was not cached
  uint64_t rules_not_inserted = 0;  // rules dropped: their probed entries were taken
  uint64_t fallbacks = 0;      // captures the cached walk could not finish
  uint64_t truncated_stacks = 0;  // of those, kept short: libunwind was not loaded
};

CachedUnwinderCounts ReadCachedUnwinderCounts();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_STACK_CAPTURE_H_
