// The choice of unwinder, libunwind's unw_backtrace through dlopen, and the
// frame-pointer walk.
#include "accounting/stack_capture.h"

#include <dlfcn.h>
#include <sched.h>
#include <libunwind.h>
#include <string.h>
#include <strings.h>

#include <atomic>

#include "accounting/cached_unwinder.h"
#include "accounting/frame_collector.h"
#include "accounting/frame_rule_cache.h"
#include "accounting/stack_bounds.h"
#include "accounting/stack_hash.h"
#include "accounting/unwinder_memory.h"
#include "alloc/macros.h"
#include "base/log.h"

namespace memward::accounting {
namespace {

using BacktraceFunction = int (*)(void**, int);
using SetCachingPolicyFunction = int (*)(unw_addr_space_t, unw_caching_policy_t);
using GetContextFunction = int (*)(unw_context_t*);
using InitLocalFunction = int (*)(unw_cursor_t*, unw_context_t*);
using StepFunction = int (*)(unw_cursor_t*);
using GetRegisterFunction = int (*)(unw_cursor_t*, unw_regnum_t, unw_word_t*);

// libunwind's functions for stepping frame by frame. Written by
// LoadUnwinder outside malloc before g_backtrace; read inside malloc.
struct StepFunctions {
  GetContextFunction get_context = nullptr;
  InitLocalFunction init_local = nullptr;
  StepFunction step = nullptr;
  GetRegisterFunction get_register = nullptr;
};
constinit StepFunctions g_step_functions;

// A thread's first captures step through its frames with unw_step, and only
// later ones use unw_backtrace. unw_backtrace's first call on a thread steps
// through every frame anyway, to fill its trace cache, and first maps and
// fills that 256 KiB cache (about 313,000 instructions in libunwind 1.6.2,
// counted with callgrind). Short-lived threads, which take one or two
// samples, thus skip the cache. A thread with more samples pays for three
// extra stepped captures once, 35 to 43 us each at 42 frames against 0.7 us
// with the cache (sampler_micro, on a loaded 2-CPU machine).
constexpr uint8_t kCapturesBeforeTraceCache = 4;

// Written by LoadUnwinder outside malloc; read inside malloc.
constinit std::atomic<BacktraceFunction> g_backtrace{nullptr};
constinit std::atomic<Unwinder> g_unwinder{Unwinder::kFramePointers};
constinit std::atomic<uint64_t> g_cached_fallbacks{0};

// The cached unwinder loads libunwind only when a walk first meets a frame
// it cannot unwind: until then, such a capture keeps the frames found above
// that frame, counts in `g_truncated_stacks` and sets `g_libunwind_needed`.
// LoadFallbackLibunwind, outside malloc, then loads it with the bound that
// LoadUnwinder was given.
constinit std::atomic<bool> g_libunwind_needed{false};
constinit std::atomic<uint64_t> g_truncated_stacks{0};
constinit std::atomic<uint64_t> g_fallback_cache_bytes{0};

// NOTE: the frame rule cache has room for 8,192 return addresses. Those
// past its room are looked up in the CFI at every capture that meets them,
// about 2,400 instructions each (callgrind).

// Fork safety: libunwind takes internal mutexes while it steps through
// frames, and the cached walk's lookups in the CFI take the dynamic loader's
// lock. A child forked while another thread held one would block on it at
// its first capture. Captures that may take such a lock therefore announce
// themselves in `g_captures_running`. The fork handler sets `g_fork_pending`
// and waits until none runs, and a capture that finds the flag set skips
// the unwinder. Both sides use sequentially consistent operations, so one
// always sees the other. Walks that take no lock (the
// frame-pointer walk, and the cached walk while every rule it meets is
// cached) skip the announcement, which costs two atomic read-modify-writes.
constinit std::atomic<uint32_t> g_captures_running{0};
constinit std::atomic<bool> g_fork_pending{false};

// The most of memward's own frames seen on top of a captured stack. The
// unwinder is asked for that many frames beyond the sample's maximum, since
// each frame it walks costs about 80 instructions in libunwind 1.6.2. It
// starts at the depth of the deepest entry path plus one (realloc, then
// ReallocateAfterCountdown, ReallocateSampled, AllocateSampled,
// RecordSample, CaptureStack) and grows when a capture finds more.
constinit std::atomic<int> g_memward_frames{7};

// Follows the frame-pointer chain from the caller's frame into `frames`.
// Each frame stores the caller's frame pointer and the return address. The
// walk stops at a frame pointer that does not move up the stack by less
// than 1 MiB.
MEMWARD_TEXT __attribute__((noinline)) void WalkFramePointers(FrameCollector& frames) {
  FrameCollector collector = frames;
  const uintptr_t* frame = static_cast<const uintptr_t*>(__builtin_frame_address(0));
  while (!collector.Full() && frame != nullptr) {
    uintptr_t return_address = frame[1];
    if (return_address == 0) break;
    collector.Add(return_address);
    const uintptr_t* next = reinterpret_cast<const uintptr_t*>(frame[0]);
    if (next <= frame || reinterpret_cast<uintptr_t>(next) - reinterpret_cast<uintptr_t>(frame) >
                             (uintptr_t{1} << 20) ||
        (reinterpret_cast<uintptr_t>(next) & 7) != 0) {
      break;
    }
    frame = next;
  }
  frames = collector;
}

// Returns the return addresses of the caller's frames, stepping with
// unw_step, as unw_backtrace does without its trace cache.
MEMWARD_TEXT __attribute__((noinline)) int StepThroughFrames(uintptr_t* out, int max_frames) {
  unw_context_t context;
  unw_cursor_t cursor;
  if (g_step_functions.get_context(&context) != 0) return 0;
  if (g_step_functions.init_local(&cursor, &context) != 0) return 0;
  int depth = 0;
  while (depth < max_frames && g_step_functions.step(&cursor) > 0) {
    unw_word_t address = 0;
    if (g_step_functions.get_register(&cursor, UNW_REG_IP, &address) != 0 || address == 0) break;
    out[depth++] = address;
  }
  return depth;
}

// Looks up the functions that StepThroughFrames calls; returns whether all
// were found.
bool FindStepFunctions(void* library) {
  g_step_functions.get_context =
      reinterpret_cast<GetContextFunction>(dlsym(library, "_Ux86_64_getcontext"));
  g_step_functions.init_local =
      reinterpret_cast<InitLocalFunction>(dlsym(library, "_ULx86_64_init_local"));
  g_step_functions.step = reinterpret_cast<StepFunction>(dlsym(library, "_ULx86_64_step"));
  g_step_functions.get_register =
      reinterpret_cast<GetRegisterFunction>(dlsym(library, "_ULx86_64_get_reg"));
  return g_step_functions.get_context != nullptr && g_step_functions.init_local != nullptr &&
         g_step_functions.step != nullptr && g_step_functions.get_register != nullptr;
}

bool OpenLibunwind(uint64_t max_cache_bytes) {
  if (g_backtrace.load(std::memory_order_acquire) != nullptr) return true;
  void* library = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    base::Log("sampling: could not load libunwind.so.8 (%s); stacks are captured with frame "
              "pointers, which needs a host built with -fno-omit-frame-pointer",
              dlerror());
    return false;
  }
  // Before the first call into the library, so that every mapping it makes
  // is counted.
  if (!CountLibraryMappings(library, max_cache_bytes)) {
    base::Log("sampling: could not find libunwind.so.8's relocations for mmap and munmap; "
              "the unwinder's caches are neither counted nor bounded");
  }
  auto backtrace = reinterpret_cast<BacktraceFunction>(dlsym(library, "unw_backtrace"));
  auto set_policy =
      reinterpret_cast<SetCachingPolicyFunction>(dlsym(library, "_ULx86_64_set_caching_policy"));
  auto* address_space = static_cast<unw_addr_space_t*>(dlsym(library, "_ULx86_64_local_addr_space"));
  if (backtrace == nullptr || set_policy == nullptr || address_space == nullptr ||
      !FindStepFunctions(library)) {
    base::Log("sampling: libunwind.so.8 lacks unw_backtrace, unw_step or its cache controls; "
              "stacks are captured with frame pointers");
    return false;
  }
  // Per-thread register-state caches need no lock. unw_set_cache_size is
  // not called: in libunwind 1.6.2 it sizes only the global cache, which
  // this policy leaves unused (strace showed the same mappings, per thread
  // too, with and without it).
  set_policy(*address_space, UNW_CACHE_PER_THREAD);
  g_backtrace.store(backtrace, std::memory_order_release);
  return true;
}

}  // namespace

bool ParseUnwinder(const char* name, Unwinder& unwinder) {
  if (strcasecmp(name, "cached") == 0) {
    unwinder = Unwinder::kCached;
  } else if (strcasecmp(name, "libunwind") == 0) {
    unwinder = Unwinder::kLibunwind;
  } else if (strcasecmp(name, "frame_pointers") == 0) {
    unwinder = Unwinder::kFramePointers;
  } else {
    return false;
  }
  return true;
}

namespace {

// libunwind's first use in the process sets it up and reads the unwind
// tables of the calling thread's frames. Doing it at start-up keeps that
// cost out of the first sample. Stepping leaves this thread without a trace
// cache until it samples often enough to need one.
void WarmUpLibunwind() {
  uintptr_t scratch[32];
  StepThroughFrames(scratch, 32);
}

// The cached walk reads /proc/self/maps for the thread's stack bounds.
// Reading them at start-up keeps that open(2) before any seccomp filter the
// host installs later (tests/integration/sandbox_test.cc). Only the bounds
// are read: a whole walk, or libunwind's warm-up, would also make resident
// the rule table's pages and the unwind tables of every object on the
// start-up stack, which a program that never samples does not need.
// NOTE: a thread started after such a filter still opens the file at its
// first capture, and so does the main thread when its stack grows past the
// bounds read here.
void WarmUpCachedUnwinder() {
  StackBounds bounds;
  FindStackBounds(reinterpret_cast<uintptr_t>(__builtin_frame_address(0)), bounds);
}

}  // namespace

Unwinder LoadUnwinder(Unwinder requested, uint64_t max_cache_bytes) {
  // The frame rule cache may take at most half of the bound.
  uint64_t rule_cache_bytes = max_cache_bytes / 2;
  Unwinder selected = requested;
  if (selected == Unwinder::kCached && !CreateFrameRuleCache(rule_cache_bytes)) {
    base::Log("sampling: could not map the frame rule cache (%llu bytes, at most half of "
              "sample_unwinder_max_bytes=%llu); stacks are captured with libunwind. Raise "
              "sample_unwinder_max_bytes to at least twice the cache to use the cached unwinder",
              static_cast<unsigned long long>(FrameRuleCacheMappingBytes()),
              static_cast<unsigned long long>(max_cache_bytes));
    selected = Unwinder::kLibunwind;
  }
  uint64_t libunwind_bytes = max_cache_bytes - ReadFrameRuleCacheCounts().mapped_bytes;
  // The cached unwinder's fallback is loaded when a stack first needs it:
  // libunwind and liblzma add about 220 KiB resident (rss_probe) to a
  // program whose stacks may never need them.
  g_fallback_cache_bytes.store(libunwind_bytes, std::memory_order_relaxed);
  if (selected == Unwinder::kLibunwind && !OpenLibunwind(libunwind_bytes)) {
    selected = Unwinder::kFramePointers;
  }
  g_unwinder.store(selected, std::memory_order_release);
  if (selected == Unwinder::kLibunwind) WarmUpLibunwind();
  if (selected == Unwinder::kCached) WarmUpCachedUnwinder();
  return selected;
}

bool LibunwindNeeded() {
  return g_libunwind_needed.load(std::memory_order_relaxed) &&
         g_backtrace.load(std::memory_order_acquire) == nullptr;
}

bool LoadFallbackLibunwind() {
  return OpenLibunwind(g_fallback_cache_bytes.load(std::memory_order_relaxed));
}

void PauseCapturesForFork() {
  g_fork_pending.store(true);
  while (g_captures_running.load() != 0) sched_yield();
}

void ResumeCapturesAfterFork() { g_fork_pending.store(false); }

// A thread of the parent may have counted itself in just before the fork
// and seen the flag too late to leave; no such thread exists in the child.
void ResumeCapturesInChild() {
  g_captures_running.store(0);
  g_fork_pending.store(false);
}

namespace {

// Raises g_memward_frames when a capture found more of memward's frames
// than it expected.
MEMWARD_TEXT void NoteMemwardFrames(int count) {
  int expected = g_memward_frames.load(std::memory_order_relaxed);
  while (count > expected &&
         !g_memward_frames.compare_exchange_weak(expected, count, std::memory_order_relaxed)) {
  }
}

// Returns the number of frames that `collector` stored, and their hash in
// `hash`.
MEMWARD_TEXT uint32_t FinishCapture(const FrameCollector& collector, uint64_t* hash) {
  NoteMemwardFrames(static_cast<int>(collector.memward_frames()));
  *hash = collector.hash();
  return collector.depth();
}

// Captures with libunwind: unw_step for a thread's first captures, then
// unw_backtrace with its trace cache. libunwind returns memward's frames
// too, so it is asked for as many more as a capture has found, and they
// are cut off here.
MEMWARD_TEXT uint32_t CaptureWithLibunwind(uintptr_t* frames, uint32_t max_frames,
                                           uint8_t* captures, uint64_t* hash) {
  BacktraceFunction backtrace = g_backtrace.load(std::memory_order_acquire);
  if (backtrace == nullptr) {
    FrameCollector collector(frames, max_frames);
    WalkFramePointers(collector);
    return FinishCapture(collector, hash);
  }
  constexpr int kBufferFrames = 128;
  uintptr_t buffer[kBufferFrames];
  int capacity = static_cast<int>(max_frames) + g_memward_frames.load(std::memory_order_relaxed);
  if (capacity > kBufferFrames) capacity = kBufferFrames;
  int depth = 0;
  if (*captures < kCapturesBeforeTraceCache) {
    ++*captures;
    depth = StepThroughFrames(buffer, capacity);
  } else {
    depth = backtrace(reinterpret_cast<void**>(buffer), capacity);
  }
  int first = 0;
  while (first < depth && InMemwardText(buffer[first])) first++;
  NoteMemwardFrames(first);
  uint32_t copied = static_cast<uint32_t>(depth - first);
  if (copied > max_frames) copied = max_frames;
  memcpy(frames, buffer + first, copied * sizeof(uintptr_t));
  *hash = HashStack(frames, copied);
  return copied;
}

// Announces a capture that may take a lock to the fork handler. Returns
// false, announcing nothing, when a fork is under way: the sample is then
// kept without its stack.
MEMWARD_TEXT bool AnnounceCapture() {
  g_captures_running.fetch_add(1);
  if (!g_fork_pending.load()) return true;
  g_captures_running.fetch_sub(1);
  return false;
}

MEMWARD_TEXT void EndAnnouncedCapture() { g_captures_running.fetch_sub(1); }

MEMWARD_TEXT uint32_t CaptureNoFrames(uint64_t* hash) {
  *hash = HashStack(nullptr, 0);
  return 0;
}

}  // namespace

MEMWARD_TEXT uint32_t CaptureStackWith(Unwinder unwinder, uintptr_t* frames, uint32_t max_frames,
                                       uint8_t* captures, uint64_t* hash) {
  if (unwinder == Unwinder::kFramePointers) {
    FrameCollector collector(frames, max_frames);
    WalkFramePointers(collector);
    return FinishCapture(collector, hash);
  }
  if (unwinder == Unwinder::kCached) {
    if (ClaimLoaderCheck() && AnnounceCapture()) {
      DropFrameRulesIfObjectsUnloaded();
      EndAnnouncedCapture();
    }
    // The walk uses the cached rules alone, taking no lock, until it meets
    // an uncached return address. From there it goes on announced, since
    // its lookups in the CFI take the loader's lock.
    FrameCollector collector(frames, max_frames);
    CachedWalk walk;
    int walked = WalkCachedFrames(collector, walk, RuleMisses::kStop);
    if (walked == kWalkRuleMissed) {
      if (!AnnounceCapture()) return CaptureNoFrames(hash);
      walked = ResumeCachedWalk(collector, walk, RuleMisses::kLookUp);
      EndAnnouncedCapture();
    }
    if (walked >= 0) return FinishCapture(collector, hash);
    g_cached_fallbacks.fetch_add(1, std::memory_order_relaxed);
    if (g_backtrace.load(std::memory_order_acquire) == nullptr) {
      // The frames found above the one the walk could not unwind.
      g_truncated_stacks.fetch_add(1, std::memory_order_relaxed);
      g_libunwind_needed.store(true, std::memory_order_relaxed);
      return FinishCapture(collector, hash);
    }
  }
  if (!AnnounceCapture()) return CaptureNoFrames(hash);
  uint32_t depth = CaptureWithLibunwind(frames, max_frames, captures, hash);
  EndAnnouncedCapture();
  return depth;
}

MEMWARD_TEXT uint32_t CaptureStack(uintptr_t* frames, uint32_t max_frames, uint8_t* captures,
                                   uint64_t* hash) {
  return CaptureStackWith(g_unwinder.load(std::memory_order_relaxed), frames, max_frames,
                          captures, hash);
}

uint64_t UnwinderCacheBytes() {
  return UnwinderMappedBytes() + ReadFrameRuleCacheCounts().mapped_bytes;
}

CachedUnwinderCounts ReadCachedUnwinderCounts() {
  FrameRuleCacheCounts rules = ReadFrameRuleCacheCounts();
  CachedUnwinderCounts counts;
  counts.rule_entries = rules.entries;
  counts.rule_home_entries = rules.home_entries;
  counts.rule_misses = rules.misses;
  counts.rules_not_inserted = rules.not_inserted;
  counts.fallbacks = g_cached_fallbacks.load(std::memory_order_relaxed);
  counts.truncated_stacks = g_truncated_stacks.load(std::memory_order_relaxed);
  return counts;
}

}  // namespace memward::accounting
