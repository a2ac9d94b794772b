// libunwind's unw_backtrace through dlopen, and the frame-pointer walk.
#include "accounting/stack_capture.h"

#include <dlfcn.h>
#include <sched.h>
#include <libunwind.h>
#include <pthread.h>
#include <string.h>

#include <atomic>

#include "alloc/macros.h"
#include "base/log.h"

// The bounds of the memward_text section, defined by the linker.
extern "C" {
extern const char __start_memward_text[] __attribute__((visibility("hidden")));
extern const char __stop_memward_text[] __attribute__((visibility("hidden")));
}

namespace memward::accounting {
namespace {

using BacktraceFunction = int (*)(void**, int);
using SetCachingPolicyFunction = int (*)(unw_addr_space_t, unw_caching_policy_t);
using SetCacheSizeFunction = int (*)(unw_addr_space_t, size_t, int);

// Written by LoadUnwinder outside malloc; read inside malloc.
constinit std::atomic<BacktraceFunction> g_backtrace{nullptr};
constinit std::atomic<bool> g_frame_pointers{false};
// Live threads that have warmed libunwind up. Each such thread sets
// `g_warm_key`, whose destructor counts the thread out when it exits.
constinit std::atomic<uint64_t> g_warm_threads{0};
constinit pthread_key_t g_warm_key = 0;
constinit std::atomic<bool> g_warm_key_ready{false};

void ForgetWarmThread(void*) { g_warm_threads.fetch_sub(1, std::memory_order_relaxed); }

// Fork safety: libunwind takes internal mutexes while it steps through
// frames, and a child forked while another thread held one would block on it
// at its first capture. Captures therefore announce themselves in
// `g_captures_running`, and the fork handler sets `g_fork_pending` and waits
// until none runs; a capture that finds the flag set skips the unwinder. Both
// sides use sequentially consistent operations, so one always sees the other.
constinit std::atomic<uint32_t> g_captures_running{0};
constinit std::atomic<bool> g_fork_pending{false};

// libunwind 1.6 keeps a per-thread trace cache of 2^14 entries of 16 bytes
// (256 KiB, from mmap) that it quadruples, dropping its contents, once half
// of it is used, i.e. past 8,192 distinct return addresses on one thread
// (src/x86_64/Gtrace.c). unw_set_cache_size bounds only the DWARF
// register-state cache, set below to 1,024 entries per thread.
// NOTE: libunwind offers no call to cap the trace cache, so
// UnwinderCacheBytes counts its initial size only; a thread that samples
// more than 8,192 distinct return addresses uses 1 MiB or more.
constexpr uint64_t kTraceCacheBytes = 256 * 1024;
constexpr size_t kRegisterStateCacheEntries = 1024;

// Frames that the unwinder reports beyond kMaxSampleFrames, to leave room
// for memward's own frames that are cut off.
constexpr int kSpareFrames = 16;

bool InMemwardText(uintptr_t address) {
  return address >= reinterpret_cast<uintptr_t>(__start_memward_text) &&
         address < reinterpret_cast<uintptr_t>(__stop_memward_text);
}

// Follows the frame-pointer chain from the caller's frame. Each frame stores
// the caller's frame pointer and the return address. The walk stops at a
// frame pointer that does not move up the stack by less than 1 MiB.
MEMWARD_TEXT __attribute__((noinline)) int WalkFramePointers(uintptr_t* out, int max_frames) {
  const uintptr_t* frame = static_cast<const uintptr_t*>(__builtin_frame_address(0));
  int depth = 0;
  while (depth < max_frames && frame != nullptr) {
    uintptr_t return_address = frame[1];
    if (return_address == 0) break;
    out[depth++] = return_address;
    const uintptr_t* next = reinterpret_cast<const uintptr_t*>(frame[0]);
    if (next <= frame || reinterpret_cast<uintptr_t>(next) - reinterpret_cast<uintptr_t>(frame) >
                             (uintptr_t{1} << 20) ||
        (reinterpret_cast<uintptr_t>(next) & 7) != 0) {
      break;
    }
    frame = next;
  }
  return depth;
}

bool OpenLibunwind() {
  if (g_backtrace.load(std::memory_order_acquire) != nullptr) return true;
  void* library = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    base::Log("sampling: could not load libunwind.so.8 (%s); stacks are captured with frame "
              "pointers, which needs a host built with -fno-omit-frame-pointer",
              dlerror());
    return false;
  }
  auto backtrace = reinterpret_cast<BacktraceFunction>(dlsym(library, "unw_backtrace"));
  auto set_policy =
      reinterpret_cast<SetCachingPolicyFunction>(dlsym(library, "_ULx86_64_set_caching_policy"));
  auto set_size = reinterpret_cast<SetCacheSizeFunction>(dlsym(library, "_ULx86_64_set_cache_size"));
  auto* address_space = static_cast<unw_addr_space_t*>(dlsym(library, "_ULx86_64_local_addr_space"));
  if (backtrace == nullptr || set_policy == nullptr || address_space == nullptr) {
    base::Log("sampling: libunwind.so.8 lacks unw_backtrace or its cache controls; stacks are "
              "captured with frame pointers");
    return false;
  }
  if (pthread_key_create(&g_warm_key, ForgetWarmThread) == 0) {
    g_warm_key_ready.store(true, std::memory_order_release);
  }
  set_policy(*address_space, UNW_CACHE_PER_THREAD);
  if (set_size != nullptr) set_size(*address_space, kRegisterStateCacheEntries, 0);
  g_backtrace.store(backtrace, std::memory_order_release);
  return true;
}

}  // namespace

bool LoadUnwinder(bool frame_pointers) {
  bool loaded = !frame_pointers && OpenLibunwind();
  g_frame_pointers.store(!loaded, std::memory_order_release);
  if (loaded) {
    // The first call on a thread creates its caches and reads the unwind
    // tables; doing it here keeps that cost out of the first sample.
    void* scratch[32];
    g_backtrace.load(std::memory_order_relaxed)(scratch, 32);
  }
  return loaded;
}

void PauseCapturesForFork() {
  g_fork_pending.store(true);
  while (g_captures_running.load() != 0) sched_yield();
}

void ResumeCapturesAfterFork() { g_fork_pending.store(false); }

// A thread of the parent may have counted itself in just before the fork
// and seen the flag too late to leave; no such thread exists in the child.
void ResumeCapturesInChild(bool thread_warm) {
  g_captures_running.store(0);
  g_fork_pending.store(false);
  g_warm_threads.store(thread_warm ? 1 : 0, std::memory_order_relaxed);
}

MEMWARD_TEXT uint32_t CaptureStack(uintptr_t* frames, uint32_t max_frames, uint8_t* warm) {
  g_captures_running.fetch_add(1);
  if (g_fork_pending.load()) {
    // A fork is under way: the sample is kept without its stack.
    g_captures_running.fetch_sub(1);
    return 0;
  }
  uintptr_t buffer[128];
  int capacity = static_cast<int>(max_frames) + kSpareFrames;
  if (capacity > 128) capacity = 128;
  int depth = 0;
  BacktraceFunction backtrace = g_backtrace.load(std::memory_order_acquire);
  if (backtrace != nullptr && !g_frame_pointers.load(std::memory_order_relaxed)) {
    if (*warm == 0) {
      // Warm-up: a thread's first unw_backtrace creates its trace cache and
      // parses unwind tables, so it costs far more than later calls. The
      // sample's own capture comes after it.
      backtrace(reinterpret_cast<void**>(buffer), capacity);
      *warm = 1;
      g_warm_threads.fetch_add(1, std::memory_order_relaxed);
      // May allocate (glibc's second-level key block); the caller has made
      // such allocations untagged and unsampled.
      if (g_warm_key_ready.load(std::memory_order_acquire)) {
        pthread_setspecific(g_warm_key, reinterpret_cast<void*>(1));
      }
    }
    depth = backtrace(reinterpret_cast<void**>(buffer), capacity);
  } else {
    depth = WalkFramePointers(buffer, capacity);
  }
  g_captures_running.fetch_sub(1);
  int first = 0;
  while (first < depth && InMemwardText(buffer[first])) first++;
  uint32_t copied = 0;
  for (int i = first; i < depth && copied < max_frames; i++) frames[copied++] = buffer[i];
  return copied;
}

uint64_t UnwinderCacheBytes() {
  return g_warm_threads.load(std::memory_order_relaxed) * kTraceCacheBytes;
}

}  // namespace memward::accounting
