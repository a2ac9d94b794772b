// A new thread's start on jemalloc's automatic arenas (see thread_start.h).
#include "alloc/thread_start.h"

#include <jemalloc/jemalloc.h>
#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "alloc/engine.h"

#if JEMALLOC_VERSION_MAJOR != 5 || JEMALLOC_VERSION_MINOR != 3
#error "thread_start.cc calls internal functions of jemalloc 5.3; check them for this version"
#endif

// jemalloc 5.3 internals (src/arena.c, src/jemalloc.c): the counter of
// threads assigned to an arena, and the array of arenas by index, whose
// entries are atomic pointers with the layout of a plain pointer.
extern "C" void je_arena_nthreads_inc(void* arena, bool internal);
extern "C" void* je_arenas[];

namespace memward::alloc {
namespace {

// The narenas setting allows at most 1,024 automatic arenas.
constexpr unsigned kMaxAutomaticArenas = 1024;

constinit thread_local bool t_zeroing_with_memset __attribute__((tls_model("initial-exec"))) =
    false;

// One bit per automatic arena that carries the extra thread. A bit is set
// once, by the thread whose fetch_or set it, which then counts the thread.
constinit std::atomic<uint64_t> g_held[kMaxAutomaticArenas / 64] = {};

// mallctl names as MIBs, looked up by the first thread. Two threads that race
// both look them up and store the same values.
constinit std::atomic<bool> g_names_ready{false};
constinit size_t g_thread_arena_mib[2] = {};
constinit unsigned g_automatic_arenas = 0;

bool LookUpNames() {
  if (g_names_ready.load(std::memory_order_acquire)) return true;
  size_t length = 2;
  if (mwje_mallctlnametomib("thread.arena", g_thread_arena_mib, &length) != 0) return false;
  unsigned automatic = 0;
  size_t automatic_length = sizeof(automatic);
  if (mwje_mallctl("opt.narenas", &automatic, &automatic_length, nullptr, 0) != 0) return false;
  g_automatic_arenas = automatic < kMaxAutomaticArenas ? automatic : kMaxAutomaticArenas;
  g_names_ready.store(true, std::memory_order_release);
  return true;
}

// Returns the calling thread's arena. Reading thread.arena initialises the
// thread's jemalloc state, its cache included, and assigns it an arena.
bool ReadThreadArena(unsigned* index) {
  size_t length = sizeof(*index);
  t_zeroing_with_memset = true;
  int error = mwje_mallctlbymib(g_thread_arena_mib, 2, index, &length, nullptr, 0);
  t_zeroing_with_memset = false;
  return error == 0;
}

void HoldArena(unsigned index) {
  if (index >= g_automatic_arenas) return;  // an arena memward created: not automatic
  std::atomic<uint64_t>& word = g_held[index / 64];
  const uint64_t bit = uint64_t{1} << (index % 64);
  if ((word.load(std::memory_order_relaxed) & bit) != 0) return;
  if ((word.fetch_or(bit, std::memory_order_acq_rel) & bit) != 0) return;
  // The thread assigned to the arena has just created it, so it is published.
  void* arena = __atomic_load_n(&je_arenas[index], __ATOMIC_ACQUIRE);
  if (arena == nullptr) return;
  je_arena_nthreads_inc(arena, false);
}

}  // namespace

bool ZeroingWithMemset() { return t_zeroing_with_memset; }

void StartThreadOnEngine() {
  if (!LookUpNames()) return;
  unsigned index = 0;
  if (!ReadThreadArena(&index)) return;
  HoldArena(index);
}

}  // namespace memward::alloc
