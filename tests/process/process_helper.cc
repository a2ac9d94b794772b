// A program the process tests start in a new process, to end it in ways a
// test binary cannot end itself. Usage: process_helper MODE, where MODE is
//   check                       check that memward is the allocator, allocate
//                               from several threads, return 0
//   exit-from-worker            one of several allocating threads calls exit(0)
//                               while the others keep allocating
//   exit-from-main              the main thread calls exit(0) while allocating
//                               threads run
//   return-with-live-memory     main returns 0 with live blocks in locals,
//                               globals, thread_local objects and static
//                               objects whose destructors allocate and free
//   return-with-running-threads main returns 0 while detached threads allocate
//   exit-in-scopes              like exit-from-worker, with every thread inside
//                               a tenant scope or request, the exiting one too
//   return-in-scopes            main returns 0 inside an open request while
//                               detached threads allocate in tenant scopes
//   exit-during-thread-churn    exit(0) while scoped threads keep starting and
//                               exiting, so some are inside their exit
//   background-thread-after-fork
//                               run with MEMWARD_CONF=background_thread=true:
//                               check that jemalloc's background threads are on,
//                               fork, and check in the child that they are on
//                               again once it allocates (exit status 5 when off
//                               in the parent, 6 when off in the child)
//   stderr-becomes-data-file    close descriptor 2, open the file named by
//                               MEMWARD_TEST_DATA_FILE (which takes number 2),
//                               write "data\n" to it and return 0
//   stderr-closed-at-exit       register an exit handler that closes
//                               descriptor 2, as coreutils do, and return 0
//   sequential-threads          run 300 threads one after another, then
//                               check that at most 4 automatic arenas exist
//   cache-warmup                run with the default tcache_warmup (256 KiB):
//                               the main thread and a lone thread get their
//                               jemalloc cache at once; threads started in a
//                               burst get it only after a warm-up of
//                               allocations, flush it without an error, and
//                               follow what the program sets with
//                               thread.tcache.enabled
//   warmup-ends-in-last-destructor-pass
//                               burst threads allocate past their warm-up in
//                               glibc's last key-destructor pass; exits 0
//                               unless it crashes
//   cache-at-start              run with tcache_warmup=0: every thread of a
//                               burst has its cache from its first call
// Exit status: 0 on success, 2 for a bad argument, 3 when memward is not the
// allocator, 4 when a check failed. A crash shows as a signal.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "memward/memward.h"

namespace {

constexpr int kBadArgument = 2;
constexpr int kNotOnMemward = 3;
constexpr int kCheckFailed = 4;
constexpr int kBackgroundThreadOffInParent = 5;
constexpr int kBackgroundThreadOffInChild = 6;

bool MemwardIsAllocator() {
  if (dlsym(RTLD_DEFAULT, "memward_version") == nullptr) {
    fprintf(stderr, "process_helper: memward_version is not defined, memward is not loaded\n");
    return false;
  }
  Dl_info info{};
  void* volatile malloc_address = reinterpret_cast<void*>(&malloc);
  if (dladdr(malloc_address, &info) == 0 || info.dli_fname == nullptr ||
      strstr(info.dli_fname, "libmemward") == nullptr) {
    fprintf(stderr, "process_helper: malloc resolves to '%s', not to libmemward\n",
            info.dli_fname != nullptr ? info.dli_fname : "");
    return false;
  }
  return true;
}

// Allocates and frees blocks of mixed sizes (up to 1 MiB) until `stop` is
// set or `rounds` rounds are done, keeping up to 16 live. Returns false
// when a block comes back with other contents than were written.
bool Churn(unsigned seed, const std::atomic<bool>* stop, long rounds) {
  void* live[16] = {};
  size_t sizes[16] = {};
  unsigned state = seed * 2654435761u + 1;
  bool intact = true;
  for (long round = 0; rounds < 0 || round < rounds; ++round) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) break;
    state = state * 1103515245u + 12345u;
    const unsigned slot = (state >> 8) % 16;
    if (live[slot] != nullptr) {
      const auto* bytes = static_cast<const unsigned char*>(live[slot]);
      if (bytes[0] != static_cast<unsigned char>(slot) ||
          bytes[sizes[slot] - 1] != static_cast<unsigned char>(slot)) {
        intact = false;
      }
      free(live[slot]);
    }
    sizes[slot] = (state >> 4) % 100 == 0 ? 1024 * 1024 : 1 + (state >> 12) % 4096;
    live[slot] = malloc(sizes[slot]);
    if (live[slot] == nullptr) return false;
    memset(live[slot], static_cast<int>(slot), sizes[slot]);
  }
  for (void* block : live) free(block);
  return intact;
}

int Check() {
  std::atomic<bool> intact{true};
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 4; ++i) {
    threads.emplace_back([&intact, i] {
      if (!Churn(i, nullptr, 2000)) intact.store(false);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return intact.load() ? 0 : kCheckFailed;
}

// Threads that allocate until the process ends, each holding a few live
// blocks at every moment.
void StartAllocatingThreads(int count, std::atomic<int>* started) {
  for (int i = 0; i < count; ++i) {
    std::thread([i, started] {
      started->fetch_add(1);
      Churn(static_cast<unsigned>(i), nullptr, -1);
    }).detach();
  }
}

void WaitUntilStarted(const std::atomic<int>& started, int count) {
  while (started.load() < count) std::this_thread::yield();
  // Give the threads time to be inside malloc and free, holding blocks and
  // filled thread caches.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

int ExitFromWorker() {
  std::atomic<int> started{0};
  StartAllocatingThreads(7, &started);
  std::thread exiting([&started] {
    WaitUntilStarted(started, 7);
    std::vector<std::unique_ptr<std::string>> live_strings;
    for (int i = 0; i < 1000; ++i) live_strings.push_back(std::make_unique<std::string>(200, 'w'));
    exit(0);
  });
  exiting.join();  // never returns: exit() ends the process first
  return kCheckFailed;
}

int ExitFromMain() {
  std::atomic<int> started{0};
  StartAllocatingThreads(8, &started);
  WaitUntilStarted(started, 8);
  exit(0);
}

// Objects whose destructors run during exit, after main returns: they free
// blocks allocated during the run and allocate and free new ones.
struct ExitTimeUser {
  std::vector<std::string> strings;
  std::map<int, std::vector<char>> buffers;

  ~ExitTimeUser() {
    std::string joined;
    for (const std::string& text : strings) joined += text;
    auto* block = static_cast<char*>(malloc(64 * 1024));
    if (block != nullptr) memset(block, 1, 64 * 1024);
    free(block);
  }
};

ExitTimeUser global_user;
std::unique_ptr<std::vector<std::unique_ptr<int[]>>> global_arrays;
thread_local std::vector<std::string> main_thread_strings;

void AllocateAtExit() {
  std::vector<std::string> strings(100, std::string(300, 'e'));
  void* block = malloc(2 * 1024 * 1024);
  free(block);
}

int ReturnWithLiveMemory() {
  atexit(AllocateAtExit);
  for (int i = 0; i < 1000; ++i) {
    global_user.strings.push_back(std::string(100 + i % 300, 's'));
    global_user.buffers[i] = std::vector<char>(static_cast<size_t>(i) * 16);
    main_thread_strings.push_back(std::string(64 + i % 100, 't'));
  }
  global_arrays = std::make_unique<std::vector<std::unique_ptr<int[]>>>();
  for (int i = 0; i < 100; ++i) global_arrays->push_back(std::make_unique<int[]>(1000));

  // Never freed: a leak at exit must not make the exit fail.
  for (int i = 0; i < 100; ++i) {
    void* leaked = malloc(static_cast<size_t>(i) * 100 + 1);
    if (leaked != nullptr) memset(leaked, 0, 1);
  }
  void* large_leak = malloc(16 * 1024 * 1024);
  if (large_leak != nullptr) memset(large_leak, 0, 4096);

  // Blocks freed by threads that have already ended.
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([i] {
      thread_local std::vector<std::string> worker_strings(50, std::string(500, 'x'));
      Churn(static_cast<unsigned>(i), nullptr, 5000);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return 0;
}

int ReturnWithRunningThreads() {
  std::atomic<int> started{0};
  StartAllocatingThreads(8, &started);
  WaitUntilStarted(started, 8);
  for (int i = 0; i < 100; ++i) global_user.strings.push_back(std::string(1000, 'r'));
  return 0;
}

// Registers the helper's tenants: one in memward's shared arena, one with an
// arena of its own. Returns false and reports on stderr when either fails.
memward_tenant_id shared_tenant = 0;
memward_tenant_id dedicated_tenant = 0;
bool RegisterTenants() {
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  int status = memward_tenant_register("helper-shared", &options, &shared_tenant);
  if (status == MEMWARD_OK) {
    options.dedicated_arena = 1;
    status = memward_tenant_register("helper-dedicated", &options, &dedicated_tenant);
  }
  if (status != MEMWARD_OK) {
    fprintf(stderr, "process_helper: registering a tenant failed: %s\n", memward_strerror(status));
    return false;
  }
  return true;
}

// Allocates without end, alternating between a scope of each tenant and a
// request, so that the thread is inside one at almost every moment.
void ChurnInScopes(unsigned seed) {
  for (unsigned round = 0;; ++round) {
    memward_scope saved{};
    memward_request request{};
    switch (round % 3) {
      case 0:
        memward_scope_enter(shared_tenant, &saved);
        Churn(seed + round, nullptr, 200);
        memward_scope_exit(&saved);
        break;
      case 1:
        memward_scope_enter(dedicated_tenant, &saved);
        Churn(seed + round, nullptr, 200);
        memward_scope_exit(&saved);
        break;
      default:
        memward_request_begin(shared_tenant, &request);
        Churn(seed + round, nullptr, 200);
        memward_request_end(&request, nullptr);
        break;
    }
  }
}

void StartScopedThreads(int count, std::atomic<int>* started) {
  for (int i = 0; i < count; ++i) {
    std::thread([i, started] {
      started->fetch_add(1);
      ChurnInScopes(static_cast<unsigned>(i) * 1000);
    }).detach();
  }
}

int ExitInScopes() {
  if (!RegisterTenants()) return kCheckFailed;
  std::atomic<int> started{0};
  StartScopedThreads(7, &started);
  std::thread exiting([&started] {
    WaitUntilStarted(started, 7);
    memward_request request{};
    memward_request_begin(dedicated_tenant, &request);
    std::vector<std::unique_ptr<std::string>> live_strings;
    for (int i = 0; i < 1000; ++i) live_strings.push_back(std::make_unique<std::string>(200, 'w'));
    exit(0);
  });
  exiting.join();  // never returns: exit() ends the process first
  return kCheckFailed;
}

int ExitDuringThreadChurn() {
  if (!RegisterTenants()) return kCheckFailed;
  std::atomic<int> started{0};
  for (int spawner = 0; spawner < 2; ++spawner) {
    std::thread([spawner, &started] {
      started.fetch_add(1);
      for (unsigned round = 0;; ++round) {
        std::thread([spawner, round] {
          memward_scope saved{};
          memward_scope_enter(round % 2 == 0 ? shared_tenant : dedicated_tenant, &saved);
          Churn(round * 2 + static_cast<unsigned>(spawner), nullptr, 50);
          // Every other thread exits still inside its scope.
          if (round % 4 < 2) memward_scope_exit(&saved);
        }).join();
      }
    }).detach();
  }
  WaitUntilStarted(started, 2);
  exit(0);
}

int ReturnInScopes() {
  if (!RegisterTenants()) return kCheckFailed;
  std::atomic<int> started{0};
  StartScopedThreads(8, &started);
  WaitUntilStarted(started, 8);
  memward_request request{};
  memward_request_begin(shared_tenant, &request);
  for (int i = 0; i < 100; ++i) global_user.strings.push_back(std::string(1000, 'q'));
  return 0;
}

using MallctlFunction = int (*)(const char*, void*, size_t*, void*, size_t);

// Returns the mallctl that memward exports, or nullptr.
MallctlFunction LookUpMallctl() {
  return reinterpret_cast<MallctlFunction>(dlsym(RTLD_DEFAULT, "mallctl"));
}

// Returns the value of the mallctl "background_thread", or false when it
// cannot be read.
bool BackgroundThreadEnabled() {
  static const MallctlFunction mallctl = LookUpMallctl();
  bool enabled = false;
  size_t length = sizeof enabled;
  return mallctl != nullptr &&
         mallctl("background_thread", &enabled, &length, nullptr, 0) == 0 && enabled;
}

// jemalloc 5.3 turns its background threads off in a forked child, because
// no thread but the forking one survives the fork. The setting requests
// them, so the child should have them back, at the latest shortly after it
// starts allocating.
int BackgroundThreadAfterFork() {
  Churn(1, nullptr, 1000);
  if (!BackgroundThreadEnabled()) {
    fprintf(stderr, "process_helper: background_thread is off in the parent\n");
    return kBackgroundThreadOffInParent;
  }
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return kCheckFailed;
  if (pid == 0) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      Churn(static_cast<unsigned>(attempt), nullptr, 1000);
      if (BackgroundThreadEnabled()) _exit(0);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    fprintf(stderr, "process_helper: background_thread is still off in the forked child\n");
    _exit(kBackgroundThreadOffInChild);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : kCheckFailed;
}

// Ends like a program that closed stderr and then opened a data file, which
// got descriptor 2. Nothing memward prints at exit may land in that file.
int StderrBecomesDataFile() {
  const char* path = getenv("MEMWARD_TEST_DATA_FILE");
  if (path == nullptr) return kBadArgument;
  close(STDERR_FILENO);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd != STDERR_FILENO) return kCheckFailed;
  if (write(fd, "data\n", 5) != 5) return kCheckFailed;
  void* block = malloc(100);  // some allocator activity after the switch
  free(block);
  return 0;
}

// Ends like a coreutils program, whose exit handler closes stderr after
// checking it for write errors.
int StderrClosedAtExit() {
  atexit([] { close(STDERR_FILENO); });
  void* block = malloc(100);
  free(block);
  return 0;
}

// Threads that never overlap must share the arenas of the first ones:
// jemalloc creates an arena for a new thread only when every existing one
// is in use, and memward's arena hold must not make them all look in use.
int SequentialThreads() {
  for (int i = 0; i < 300; ++i) {
    std::thread([] {
      void* block = malloc(64);
      free(block);
    }).join();
  }
  const MallctlFunction mallctl = LookUpMallctl();
  unsigned automatic = 0;
  size_t length = sizeof(automatic);
  if (mallctl == nullptr || mallctl("opt.narenas", &automatic, &length, nullptr, 0) != 0) {
    return kCheckFailed;
  }
  unsigned initialized = 0;
  for (unsigned index = 0; index < automatic; ++index) {
    const std::string name = "arena." + std::to_string(index) + ".initialized";
    bool value = false;
    length = sizeof(value);
    if (mallctl(name.c_str(), &value, &length, nullptr, 0) == 0 && value) initialized++;
  }
  if (initialized > 4) {
    fprintf(stderr, "process_helper: %u of %u automatic arenas exist after 300 sequential "
            "threads\n", initialized, automatic);
    return kCheckFailed;
  }
  return 0;
}

// Sizes of the classes that probe a thread's cache (HasThreadCache). No
// other code here allocates them.
constexpr size_t kStartProbe = 5120;
constexpr size_t kHalfWarmupProbe = 6144;
constexpr size_t kAfterWarmupProbe = 7168;

// Serializes the probes, which read their bin's fill count in the thread's
// arena, shared with other threads.
std::mutex g_probe_lock;

// Returns jemalloc's bin index of the small class `size`, or -1.
int BinIndexOf(size_t size) {
  const MallctlFunction mallctl = LookUpMallctl();
  unsigned bins = 0;
  size_t length = sizeof(bins);
  if (mallctl == nullptr || mallctl("arenas.nbins", &bins, &length, nullptr, 0) != 0) return -1;
  for (unsigned bin = 0; bin < bins; ++bin) {
    const std::string name = "arenas.bin." + std::to_string(bin) + ".size";
    size_t bin_size = 0;
    length = sizeof(bin_size);
    if (mallctl(name.c_str(), &bin_size, &length, nullptr, 0) == 0 && bin_size == size) {
      return static_cast<int>(bin);
    }
  }
  return -1;
}

// Returns the calling thread's automatic arena.
unsigned ArenaOfThread() {
  unsigned arena = 0;
  size_t length = sizeof(arena);
  if (LookUpMallctl()("thread.arena", &arena, &length, nullptr, 0) != 0) abort();
  return arena;
}

// Returns the fill count of `bin` in `arena`.
uint64_t FillsOfBin(unsigned arena, int bin) {
  const MallctlFunction mallctl = LookUpMallctl();
  uint64_t epoch = 1;
  if (mallctl("epoch", nullptr, nullptr, &epoch, sizeof(epoch)) != 0) abort();
  const std::string name =
      "stats.arenas." + std::to_string(arena) + ".bins." + std::to_string(bin) + ".nfills";
  uint64_t fills = 0;
  size_t length = sizeof(fills);
  if (mallctl(name.c_str(), &fills, &length, nullptr, 0) != 0) abort();
  return fills;
}

// Whether the calling thread has a jemalloc cache, seen by allocating one
// block of `probe_size`, a class it has not allocated before: a cache fills
// its bin from the arena, a thread without one takes the block without a
// fill. The block names the thread's own arena (MALLOCX_ARENA), because
// memward's sampler would serve a sampled block from its own arena. jemalloc
// 5.3's cache fills such a miss from the named arena. memward's
// thread.tcache.enabled reads true during a warm-up, so it cannot tell.
bool HasThreadCache(size_t probe_size) {
  static const int bins[] = {BinIndexOf(kStartProbe), BinIndexOf(kHalfWarmupProbe),
                             BinIndexOf(kAfterWarmupProbe)};
  const int bin = probe_size == kStartProbe       ? bins[0]
                  : probe_size == kHalfWarmupProbe ? bins[1]
                                                   : bins[2];
  using MallocxFunction = void* (*)(size_t, int);
  static const auto mallocx = reinterpret_cast<MallocxFunction>(dlsym(RTLD_DEFAULT, "mallocx"));
  if (bin < 0 || mallocx == nullptr) abort();
  std::lock_guard<std::mutex> hold(g_probe_lock);
  const unsigned arena = ArenaOfThread();
  const uint64_t before = FillsOfBin(arena, bin);
  void* volatile block = mallocx(probe_size, static_cast<int>((arena + 1) << 20));
  if (block == nullptr) abort();
  free(block);
  return FillsOfBin(arena, bin) > before;
}

// Makes the calling thread's first memward call, which the compiler cannot
// leave out.
void FirstCall() {
  void* volatile block = malloc(64);
  free(block);
}

// Allocates and frees `bytes` in blocks of 4 KiB.
void AllocateAndFree(size_t bytes) {
  for (size_t done = 0; done < bytes; done += 4096) {
    void* block = malloc(4096);
    if (block == nullptr) abort();
    memset(block, 1, 4096);
    free(block);
  }
}

// Returns the result of flushing the calling thread's cache by name and by
// MIB, as a program built against jemalloc may.
void FlushThreadCache(int* by_name, int* by_mib) {
  using NameToMibFunction = int (*)(const char*, size_t*, size_t*);
  using ByMibFunction = int (*)(const size_t*, size_t, void*, size_t*, void*, size_t);
  const auto name_to_mib =
      reinterpret_cast<NameToMibFunction>(dlsym(RTLD_DEFAULT, "mallctlnametomib"));
  const auto by_mib_function = reinterpret_cast<ByMibFunction>(dlsym(RTLD_DEFAULT, "mallctlbymib"));
  const MallctlFunction mallctl = LookUpMallctl();
  *by_name = mallctl == nullptr ? -1 : mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
  size_t mib[3] = {};
  size_t mib_length = 3;
  *by_mib = -1;
  if (name_to_mib != nullptr && by_mib_function != nullptr &&
      name_to_mib("thread.tcache.flush", mib, &mib_length) == 0) {
    *by_mib = by_mib_function(mib, mib_length, nullptr, nullptr, nullptr, 0);
  }
}

// What a burst thread in its warm-up does with thread.tcache.enabled, as a
// program may, before it allocates past the warm-up.
enum class CacheControl {
  kNone,
  kTurnOff,             // writes false: the cache stays off
  kRejectedWrite,       // writes an int, which jemalloc rejects with EINVAL
  kSaveTurnOffRestore,  // reads the value while writing false, then writes it back
};

// Runs `control` on the calling thread. Returns false when a call returned
// other than jemalloc's contract specifies.
bool ApplyCacheControl(CacheControl control) {
  const MallctlFunction mallctl = LookUpMallctl();
  if (mallctl == nullptr) return false;
  switch (control) {
    case CacheControl::kNone:
      return true;
    case CacheControl::kTurnOff: {
      bool off = false;
      return mallctl("thread.tcache.enabled", nullptr, nullptr, &off, sizeof(off)) == 0;
    }
    case CacheControl::kRejectedWrite: {
      int value = 0;
      return mallctl("thread.tcache.enabled", nullptr, nullptr, &value, sizeof(value)) == EINVAL;
    }
    case CacheControl::kSaveTurnOffRestore: {
      bool saved = false;
      bool off = false;
      size_t length = sizeof(saved);
      if (mallctl("thread.tcache.enabled", &saved, &length, &off, sizeof(off)) != 0 || !saved) {
        return false;
      }
      return mallctl("thread.tcache.enabled", nullptr, nullptr, &saved, sizeof(saved)) == 0;
    }
  }
  return false;
}

// What one thread of a burst saw. The fields after cache_at_start are set
// only for a thread that started without a cache.
struct BurstThread {
  bool cache_at_start = false;
  int flush_by_name = -1;
  int flush_by_mib = -1;
  bool control_worked = false;
  bool cache_after_half_warmup = false;
  bool cache_after_warmup = false;
};

// Starts `count` threads at once. Each allocates once, reads whether it has
// a cache, and waits until every thread has done so, so that the starts
// overlap. A thread without a cache then flushes its cache, applies
// `control`, and allocates half the default warm-up and then twice it,
// reading the cache state after each.
std::vector<BurstThread> RunThreadBurst(int count, CacheControl control) {
  constexpr size_t kDefaultWarmup = 256 * 1024;
  std::vector<BurstThread> seen(count);
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&seen, &started, count, i, control] {
      FirstCall();
      BurstThread& thread = seen[i];
      thread.cache_at_start = HasThreadCache(kStartProbe);
      started.fetch_add(1);
      while (started.load() < count) std::this_thread::yield();
      if (thread.cache_at_start) return;
      FlushThreadCache(&thread.flush_by_name, &thread.flush_by_mib);
      thread.control_worked = ApplyCacheControl(control);
      AllocateAndFree(kDefaultWarmup / 2);
      thread.cache_after_half_warmup = HasThreadCache(kHalfWarmupProbe);
      AllocateAndFree(2 * kDefaultWarmup);
      thread.cache_after_warmup = HasThreadCache(kAfterWarmupProbe);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return seen;
}

// Checks the threads of a burst that started without a cache. Returns how
// many there were, or -1 after reporting a failed check.
int CheckWarmingThreads(const std::vector<BurstThread>& burst, CacheControl control) {
  // Only the program's restore turns the cache on before the warm-up ends,
  // and only its turning off keeps it off after.
  const bool cache_at_half = control == CacheControl::kSaveTurnOffRestore;
  const bool cache_after = control != CacheControl::kTurnOff;
  int warming = 0;
  for (const BurstThread& thread : burst) {
    if (thread.cache_at_start) continue;
    warming++;
    if (thread.flush_by_name != 0 || thread.flush_by_mib != 0) {
      fprintf(stderr, "process_helper: thread.tcache.flush in a warm-up returned %d by name, "
              "%d by MIB\n", thread.flush_by_name, thread.flush_by_mib);
      return -1;
    }
    if (!thread.control_worked) {
      fprintf(stderr, "process_helper: thread.tcache.enabled in a warm-up (case %d) did not "
              "return what jemalloc's contract says\n", static_cast<int>(control));
      return -1;
    }
    if (thread.cache_after_half_warmup != cache_at_half ||
        thread.cache_after_warmup != cache_after) {
      fprintf(stderr, "process_helper: in case %d a burst thread had %s cache after 128 KiB "
              "and %s after 640 KiB\n", static_cast<int>(control),
              thread.cache_after_half_warmup ? "a" : "no",
              thread.cache_after_warmup ? "one" : "none");
      return -1;
    }
  }
  return warming;
}

int CacheWarmup() {
  FirstCall();
  if (!HasThreadCache(kStartProbe)) {
    fprintf(stderr, "process_helper: the main thread has no cache after its first call\n");
    return kCheckFailed;
  }
  bool lone_has_cache = false;
  std::thread([&lone_has_cache] {
    FirstCall();
    lone_has_cache = HasThreadCache(kStartProbe);
  }).join();
  if (!lone_has_cache) {
    fprintf(stderr, "process_helper: a lone thread has no cache after its first call\n");
    return kCheckFailed;
  }

  for (CacheControl control : {CacheControl::kNone, CacheControl::kTurnOff,
                               CacheControl::kRejectedWrite, CacheControl::kSaveTurnOffRestore}) {
    const int warming = CheckWarmingThreads(RunThreadBurst(128, control), control);
    if (warming < 0) return kCheckFailed;
    if (warming == 0) {
      fprintf(stderr, "process_helper: all 128 threads of a burst had a cache at once\n");
      return kCheckFailed;
    }
  }
  return 0;
}

// The key of WarmupEndsInLastDestructorPass and the destructor passes each
// thread has seen.
pthread_key_t g_rearming_key;
thread_local int t_destructor_passes = 0;

// Re-arms itself until glibc's last destructor pass, and there allocates
// past the warm-up, after jemalloc's own destructor has run.
void AllocateInLastPass(void* value) {
  if (++t_destructor_passes < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(g_rearming_key, value);
    return;
  }
  AllocateAndFree(512 * 1024);
}

// Threads of bursts whose warm-up would end in glibc's last key-destructor
// pass: the cache that jemalloc would create there is never cleaned up,
// and a later thread crashed on it.
int WarmupEndsInLastDestructorPass() {
  if (pthread_key_create(&g_rearming_key, AllocateInLastPass) != 0) return kCheckFailed;
  for (int round = 0; round < 10; ++round) {
    std::vector<std::thread> threads;
    for (int i = 0; i < 20; ++i) {
      threads.emplace_back([] {
        FirstCall();
        pthread_setspecific(g_rearming_key, reinterpret_cast<void*>(1));
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  return 0;
}

int CacheAtStart() {
  for (const BurstThread& thread : RunThreadBurst(128, CacheControl::kNone)) {
    if (!thread.cache_at_start) {
      fprintf(stderr, "process_helper: a thread had no cache with tcache_warmup=0\n");
      return kCheckFailed;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: process_helper MODE (see the comment at the top of the source)\n");
    return kBadArgument;
  }
  if (!MemwardIsAllocator()) return kNotOnMemward;

  const std::string mode = argv[1];
  if (mode == "check") return Check();
  if (mode == "exit-from-worker") return ExitFromWorker();
  if (mode == "exit-from-main") return ExitFromMain();
  if (mode == "return-with-live-memory") return ReturnWithLiveMemory();
  if (mode == "return-with-running-threads") return ReturnWithRunningThreads();
  if (mode == "exit-in-scopes") return ExitInScopes();
  if (mode == "return-in-scopes") return ReturnInScopes();
  if (mode == "exit-during-thread-churn") return ExitDuringThreadChurn();
  if (mode == "background-thread-after-fork") return BackgroundThreadAfterFork();
  if (mode == "stderr-becomes-data-file") return StderrBecomesDataFile();
  if (mode == "stderr-closed-at-exit") return StderrClosedAtExit();
  if (mode == "sequential-threads") return SequentialThreads();
  if (mode == "cache-warmup") return CacheWarmup();
  if (mode == "cache-at-start") return CacheAtStart();
  if (mode == "warmup-ends-in-last-destructor-pass") return WarmupEndsInLastDestructorPass();
  fprintf(stderr, "process_helper: unknown mode '%s'\n", mode.c_str());
  return kBadArgument;
}
