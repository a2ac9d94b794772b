// A new thread's start on jemalloc's automatic arenas (see thread_start.h).
#include "alloc/thread_start.h"

#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <atomic>

#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/sampling.h"

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
constinit thread_local bool t_is_warden __attribute__((tls_model("initial-exec"))) = false;

}  // namespace

constinit thread_local bool t_started_on_engine __attribute__((tls_model("initial-exec"))) = false;

namespace {

// mallctl names as MIBs, looked up by the first thread. Two threads that race
// both look them up and store the same values.
constinit std::atomic<bool> g_names_ready{false};
constinit size_t g_thread_arena_mib[2] = {};
constinit size_t g_decay_mib[3] = {};
constinit unsigned g_automatic_arenas = 0;
// The tcache_warmup setting. 0 gives threads their cache at once.
constinit int64_t g_tcache_warmup = 0;

// Set by the first DecayArenas of this process: the warden runs the decay,
// so the hold cannot leave dirty pages behind for good, and the warden is
// on arena 0, which the hold leaves out.
constinit std::atomic<bool> g_decay_running{false};

// Threads that have run StartThreadOnEngine, and how to ask the warden for
// an early decay once there are two.
constinit std::atomic<uint32_t> g_started_threads{0};
constinit std::atomic<void (*)()> g_decay_request{nullptr};

// The start times of the last kChurnStarts threads, in a ring that
// g_thread_starts indexes. Threads churn when the kChurnStarts-th start
// before this one is less than kChurnWindowNs ago.
// Google Benchmark started at most 7 threads within 10 ms (and 22 within
// 100 ms) while it sized the runs of its two-thread benchmarks (strace of
// bench/micro/malloc_micro, --benchmark_min_time=0.01 and 0.05), and those
// threads must keep their cache from the start. workload_thread_churn
// starts about 400 in 10 ms.
constexpr uint64_t kChurnStarts = 16;
constexpr int64_t kChurnWindowNs = 10'000'000;
constinit std::atomic<int64_t> g_start_times[kChurnStarts] = {};
constinit std::atomic<uint64_t> g_thread_starts{0};

// The key whose destructor ends a thread's warm-up at its exit
// (CreateWarmupExitKey); set on threads in their warm-up.
constinit pthread_key_t g_warmup_key = 0;
// glibc's PTHREAD_KEY_2NDLEVEL_SIZE (nptl/pthread_setspecific.c).
constexpr pthread_key_t kInlineKeys = 32;
constinit bool g_warmup_key_created = false;

// Ends the calling thread's warm-up. A warm-up that ended in a key
// destructor after jemalloc's own (its TSD clean-up) linked a new cache into
// the arena that nothing unlinked, and a later thread crashed on it.
void EndWarmupAtExit(void*) { CancelThreadCacheWarmup(); }

// The hold moves kNotHeld -> kHolding -> kHeld, or back to kNotHeld when an
// automatic arena does not exist yet. Only the thread that moved it to
// kHolding counts the extra threads, so each arena gets exactly one.
enum HoldState : int { kNotHeld, kHolding, kHeld };
constinit std::atomic<int> g_hold_state{kNotHeld};

bool LookUpNames() {
  if (g_names_ready.load(std::memory_order_acquire)) return true;
  size_t length = 2;
  if (mwje_mallctlnametomib("thread.arena", g_thread_arena_mib, &length) != 0) return false;
  length = 3;
  if (mwje_mallctlnametomib("arena.0.decay", g_decay_mib, &length) != 0) return false;
  unsigned automatic = 0;
  size_t automatic_length = sizeof(automatic);
  if (mwje_mallctl("opt.narenas", &automatic, &automatic_length, nullptr, 0) != 0) return false;
  g_automatic_arenas = automatic < kMaxAutomaticArenas ? automatic : kMaxAutomaticArenas;
  g_tcache_warmup = CurrentSettings().Get(base::SettingId::kTcacheWarmup);
  g_names_ready.store(true, std::memory_order_release);
  return true;
}

// Creates the calling thread's jemalloc state, its cache included, and
// assigns it an arena, by reading thread.arena.
void CreateThreadCache() {
  unsigned index = 0;
  size_t length = sizeof(index);
  t_zeroing_with_memset = true;
  mwje_mallctlbymib(g_thread_arena_mib, 2, &index, &length, nullptr, 0);
  t_zeroing_with_memset = false;
}

// Creates (zeroing a recycled cache stack with memset) or destroys the
// calling thread's jemalloc cache.
void SetThreadCacheEnabled(bool enabled) {
  t_zeroing_with_memset = true;
  mwje_mallctl("thread.tcache.enabled", nullptr, nullptr, &enabled, sizeof(enabled));
  t_zeroing_with_memset = false;
}

// Records the calling thread's start and returns whether threads churn: at
// least kChurnStarts of them started within kChurnWindowNs. Two threads that
// race may both miss a start, which only changes the cache policy of one.
bool ThreadsChurn() {
  struct timespec now;
  if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) return false;
  const int64_t now_ns = now.tv_sec * 1'000'000'000 + now.tv_nsec;
  const uint64_t index = g_thread_starts.fetch_add(1, std::memory_order_relaxed);
  const int64_t earlier_ns =
      g_start_times[index % kChurnStarts].exchange(now_ns, std::memory_order_relaxed);
  return index >= kChurnStarts && now_ns - earlier_ns < kChurnWindowNs;
}

// Replaces the calling thread's new cache with a warm-up while threads churn.
void ChooseCacheStart() {
  if (g_tcache_warmup == 0 || !g_warmup_key_created || !ThreadsChurn()) return;
  if (pthread_setspecific(g_warmup_key, &g_warmup_key) != 0) return;
  SetThreadCacheEnabled(false);
  BeginThreadCacheWarmup(g_tcache_warmup);
}

void* AutomaticArena(unsigned index) {
  return __atomic_load_n(&je_arenas[index], __ATOMIC_ACQUIRE);
}

// Counts the extra thread on every automatic arena but arena 0 once all of
// them exist.
void TryToHoldArenas() {
  if (!g_decay_running.load(std::memory_order_acquire)) return;
  if (g_hold_state.load(std::memory_order_acquire) != kNotHeld) return;
  int expected = kNotHeld;
  if (!g_hold_state.compare_exchange_strong(expected, kHolding, std::memory_order_acq_rel)) {
    return;
  }
  for (unsigned index = 0; index < g_automatic_arenas; index++) {
    if (AutomaticArena(index) == nullptr) {
      g_hold_state.store(kNotHeld, std::memory_order_release);
      return;
    }
  }
  // Arena 0 needs no extra thread: the warden, whose decay task allowed the
  // hold, stays assigned to it (MoveCallingThreadToArenaZero).
  for (unsigned index = 1; index < g_automatic_arenas; index++) {
    je_arena_nthreads_inc(AutomaticArena(index), false);
  }
  g_hold_state.store(kHeld, std::memory_order_release);
}

// Asks the warden for its first decay when the second thread starts, so
// that a program that starts threads gets the hold within milliseconds.
void RequestDecayForSecondThread() {
  if (g_decay_running.load(std::memory_order_acquire)) return;
  if (g_started_threads.fetch_add(1, std::memory_order_acq_rel) < 1) return;
  void (*request)() = g_decay_request.load(std::memory_order_acquire);
  if (request != nullptr) request();
}

}  // namespace

bool ZeroingWithMemset() { return t_zeroing_with_memset; }

void SetZeroingWithMemset(bool memset_zeroing) { t_zeroing_with_memset = memset_zeroing; }

void StartThreadOnEngine() {
  if (t_started_on_engine) return;
  if (!LookUpNames()) return;
  t_started_on_engine = true;
  CreateThreadCache();
  ChooseCacheStart();
  if (t_is_warden) MoveCallingThreadToArenaZero();
  TryToHoldArenas();
  RequestDecayForSecondThread();
}

void EnableThreadCache() { SetThreadCacheEnabled(true); }

void CreateWarmupExitKey() {
  if (pthread_key_create(&g_warmup_key, EndWarmupAtExit) != 0) return;
  // glibc stores the values of its first 32 keys in the thread descriptor
  // and callocs a block for later ones at their first pthread_setspecific,
  // which ChooseCacheStart calls inside malloc. Past those, threads get no
  // warm-up.
  if (g_warmup_key >= kInlineKeys) {
    pthread_key_delete(g_warmup_key);
    return;
  }
  g_warmup_key_created = true;
}

void MarkCallingThreadAsWarden() { t_is_warden = true; }

void SetArenaDecayRequest(void (*request)()) {
  g_decay_request.store(request, std::memory_order_release);
  if (g_started_threads.load(std::memory_order_acquire) >= 2) request();
}

void DecayArenas() {
  if (!g_names_ready.load(std::memory_order_acquire)) return;
  if (!g_decay_running.load(std::memory_order_acquire)) {
    // The warden's first jemalloc call assigns it an arena; from here on it
    // stands for arena 0's extra thread.
    MoveCallingThreadToArenaZero();
    g_decay_running.store(true, std::memory_order_release);
  }
  size_t mib[3] = {g_decay_mib[0], kAllArenas, g_decay_mib[2]};
  mwje_mallctlbymib(mib, 3, nullptr, nullptr, nullptr, 0);
  TryToHoldArenas();
}

void MoveCallingThreadToArenaZero() {
  unsigned zero = 0;
  t_zeroing_with_memset = true;
  mwje_mallctl("thread.arena", nullptr, nullptr, &zero, sizeof(zero));
  t_zeroing_with_memset = false;
}

void ResetArenaHoldInChild() {
  g_decay_running.store(false, std::memory_order_release);
  g_hold_state.store(kNotHeld, std::memory_order_release);
}

}  // namespace memward::alloc
