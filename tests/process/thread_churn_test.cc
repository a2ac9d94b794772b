// Many short-lived threads must not grow the heap. Each thread that
// allocates gets per-thread allocator state: jemalloc's thread cache and
// tsd, and memward's thread block and batch of counts. When the thread
// exits, that state and every object cached in it must go back.
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "process_test_support.h"

namespace memward_test {
namespace {

constexpr size_t kMiB = 1024 * 1024;

// Bounds on heap growth across a churn, measured after the main thread's
// cache is flushed and every arena purged, so that neither cached objects
// nor dirty pages count.
//
// allocated: every block a churn allocates is freed before it ends, so the
// expected growth is zero. 1 MiB is 100 bytes for each of 10,000 threads.
// Any per-thread structure is larger (memward's thread block is about
// 14 KiB), so leaking one at every thread exit crosses the bound. One-off
// allocations, such as a thread memward starts lazily, stay well below it.
constexpr size_t kAllocatedGrowthBound = 1 * kMiB;
// resident: allocator metadata (radix tree leaves, extent structures, and
// jemalloc's thread caches, which it counts as metadata) grows a little as
// new address ranges are used, and jemalloc never returns it. Arenas are
// created during the warm-up churn, which runs the same batch size, so they
// are in the baseline. 4 MiB is about 420 bytes a thread. The 10,000-thread
// churns here and in tenant_lifecycle_test.cc grew it by 0.6 to 1.6 MiB,
// measured on a 2-core machine.
constexpr size_t kResidentGrowthBound = 4 * kMiB;

// Sizes each churn thread allocates: several small size classes served from
// the thread cache (jemalloc 5.3 caches sizes up to 32 KiB by default), and
// one just above the cached range.
constexpr size_t kChurnSizes[] = {8, 48, 160, 640, 3000, 14000, 30000, 40000};
// Large sizes each churn thread allocates once. Only their first and last
// bytes are written: touching every page would make the kernel's page
// faults, not the allocator, the cost of the test.
constexpr size_t kLargeChurnSizes[] = {300000, 2 * kMiB};

// Allocates a few objects of every churn size and a few C++ objects,
// checks and frees them.
bool AllocateAndFreeFewObjects(uint64_t seed) {
  bool intact = true;
  for (int round = 0; round < 3; ++round) {
    void* blocks[std::size(kChurnSizes)] = {};
    for (size_t i = 0; i < std::size(kChurnSizes); ++i) {
      blocks[i] = malloc(kChurnSizes[i]);
      if (blocks[i] == nullptr) return false;
      FillPattern(blocks[i], kChurnSizes[i], seed + i);
    }
    // Free in an order other than allocation order.
    for (size_t i = std::size(kChurnSizes); i-- > 0;) {
      if (!CheckPattern(blocks[i], kChurnSizes[i], seed + i)) intact = false;
      free(blocks[i]);
    }
  }
  for (size_t size : kLargeChurnSizes) {
    auto* block = static_cast<unsigned char*>(malloc(size));
    if (block == nullptr) return false;
    block[0] = 1;
    block[size - 1] = 2;
    if (block[0] != 1 || block[size - 1] != 2) intact = false;
    free(block);
  }
  auto strings = std::make_unique<std::vector<std::string>>();
  for (int i = 0; i < 20; ++i) strings->push_back(std::string(static_cast<size_t>(40 + i * 10), 'c'));
  return intact && strings->size() == 20;
}

// Runs `thread_count` threads, `batch_size` at a time, each calling `body`
// with its index. Returns the number of bodies that returned false.
template <typename Body>
int RunThreadsInBatches(int thread_count, int batch_size, Body body) {
  std::atomic<int> failures{0};
  for (int first = 0; first < thread_count; first += batch_size) {
    std::vector<std::thread> batch;
    for (int index = first; index < first + batch_size && index < thread_count; ++index) {
      batch.emplace_back([&failures, &body, index] {
        if (!body(index)) failures.fetch_add(1);
      });
    }
    for (std::thread& thread : batch) thread.join();
  }
  return failures.load();
}

constexpr int kThreadCount = 10000;
constexpr int kBatchSize = 50;

void ExpectNoGrowth(const HeapStats& before, const HeapStats& after) {
  const auto growth = [](size_t from, size_t to) {
    return to > from ? to - from : size_t{0};
  };

  EXPECT_LT(growth(before.allocated, after.allocated), kAllocatedGrowthBound)
      << "stats.allocated grew across the churn\n before: " << FormatHeapStats(before)
      << "\n after:  " << FormatHeapStats(after);
  EXPECT_LT(growth(before.resident, after.resident), kResidentGrowthBound)
      << "stats.resident grew across the churn\n before: " << FormatHeapStats(before)
      << "\n after:  " << FormatHeapStats(after);
}

// Returns the number of threads of this process, from /proc/self/task.
size_t CountThreads() {
  size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    ++count;
  }
  return count;
}

// Returns the names of this process's threads, from /proc/self/task/*/comm.
std::string ListThreadNames() {
  std::string names;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    names += entry.path().filename().string() + ":" + name + " ";
  }
  return names;
}

class ThreadChurnTest : public ProcessTest {};

TEST_F(ThreadChurnTest, ShortLivedThreadsLeaveNoGrowth) {
  // The warm-up creates the arenas and metadata a batch of this size needs.
  ASSERT_EQ(RunThreadsInBatches(2 * kBatchSize, kBatchSize, AllocateAndFreeFewObjects), 0);
  const HeapStats before = SettleAndReadHeapStats();

  const int failures = RunThreadsInBatches(kThreadCount, kBatchSize, [](int index) {
    return AllocateAndFreeFewObjects(static_cast<uint64_t>(index));
  });
  EXPECT_EQ(failures, 0) << "threads whose blocks failed the pattern check";

  const HeapStats after = SettleAndReadHeapStats();
  ExpectNoGrowth(before, after);
}

// Blocks handed from the main thread to a worker that frees them and exits:
// the freed blocks sit in the worker's thread cache, though their memory
// belongs to the main thread's arena, until the exit flushes them back.
TEST_F(ThreadChurnTest, ExitingThreadsReturnForeignCachedBlocks) {
  constexpr int kThreads = 2000;
  constexpr int kBlocksPerThread = 40;
  const auto hand_over_and_exit = [](int thread_count) {
    int failures = 0;
    for (int first = 0; first < thread_count; first += kBatchSize) {
      std::vector<std::vector<void*>> handed(kBatchSize);
      for (auto& blocks : handed) {
        for (int i = 0; i < kBlocksPerThread; ++i) {
          const size_t size = kChurnSizes[static_cast<size_t>(i) % 7];  // sizes the thread cache keeps
          void* block = malloc(size);
          if (block == nullptr) return -1;
          FillPattern(block, size, static_cast<uint64_t>(i));
          blocks.push_back(block);
        }
      }
      std::atomic<int> damaged{0};
      std::vector<std::thread> batch;
      for (auto& blocks : handed) {
        batch.emplace_back([&blocks, &damaged] {
          for (size_t i = 0; i < blocks.size(); ++i) {
            if (!CheckPattern(blocks[i], kChurnSizes[i % 7], i)) damaged.fetch_add(1);
            free(blocks[i]);
          }
          // Reuse some of the cached foreign blocks before exiting, so the
          // thread exits with a cache that holds both kinds.
          void* reused[8];
          for (void*& block : reused) block = malloc(48);
          for (void* block : reused) free(block);
        });
      }
      for (std::thread& thread : batch) thread.join();
      failures += damaged.load();
    }
    return failures;
  };

  ASSERT_EQ(hand_over_and_exit(2 * kBatchSize), 0);
  const HeapStats before = SettleAndReadHeapStats();
  EXPECT_EQ(hand_over_and_exit(kThreads), 0) << "handed-over blocks failed the pattern check";
  const HeapStats after = SettleAndReadHeapStats();
  ExpectNoGrowth(before, after);
}

// The reverse: workers allocate blocks, hand them to the main thread and
// exit; the main thread frees them after the allocating thread is gone.
TEST_F(ThreadChurnTest, BlocksOutliveAllocatingThread) {
  constexpr int kThreads = 2000;
  constexpr int kBlocksPerThread = 40;

  const auto allocate_then_exit = [](int thread_count) {
    int failures = 0;
    for (int first = 0; first < thread_count; first += kBatchSize) {
      std::vector<std::vector<void*>> received(kBatchSize);
      std::vector<std::thread> batch;
      for (auto& blocks : received) {
        batch.emplace_back([&blocks] {
          for (int i = 0; i < kBlocksPerThread; ++i) {
            const size_t size = kChurnSizes[static_cast<size_t>(i) % std::size(kChurnSizes)];
            void* block = malloc(size);
            if (block != nullptr) FillPattern(block, size, static_cast<uint64_t>(i));
            blocks.push_back(block);
          }
        });
      }
      for (std::thread& thread : batch) thread.join();
      for (auto& blocks : received) {
        for (size_t i = 0; i < blocks.size(); ++i) {
          const size_t size = kChurnSizes[i % std::size(kChurnSizes)];
          if (blocks[i] == nullptr || !CheckPattern(blocks[i], size, i)) ++failures;
          free(blocks[i]);
        }
      }
    }
    return failures;
  };

  ASSERT_EQ(allocate_then_exit(2 * kBatchSize), 0);
  const HeapStats before = SettleAndReadHeapStats();
  EXPECT_EQ(allocate_then_exit(kThreads), 0) << "blocks failed the pattern check or were null";
  const HeapStats after = SettleAndReadHeapStats();
  ExpectNoGrowth(before, after);
}

// Threads that exit holding cached blocks without ever freeing a block
// themselves while other threads allocate: a detached pthread ends with its
// cache full of its own freed blocks, and the exit runs concurrently with
// allocation in other threads.
TEST_F(ThreadChurnTest, DetachedThreadsExitDuringAllocation) {
  constexpr int kThreads = 2000;
  ASSERT_EQ(RunThreadsInBatches(2 * kBatchSize, kBatchSize, AllocateAndFreeFewObjects), 0);
  const HeapStats before = SettleAndReadHeapStats();
  const size_t threads_at_start = CountThreads();

  std::atomic<bool> stop{false};
  std::vector<std::thread> allocators;
  for (int i = 0; i < 2; ++i) {
    allocators.emplace_back([&stop, i] {
      while (!stop.load(std::memory_order_relaxed)) {
        AllocateAndFreeFewObjects(static_cast<uint64_t>(i));
      }
    });
  }

  std::atomic<int> finished{0};
  std::atomic<int> damaged{0};
  for (int i = 0; i < kThreads; ++i) {
    pthread_t thread;
    auto* arguments = new std::pair<std::atomic<int>*, std::atomic<int>*>(&finished, &damaged);
    const int error = pthread_create(
        &thread, nullptr,
        [](void* raw) -> void* {
          std::unique_ptr<std::pair<std::atomic<int>*, std::atomic<int>*>> counters(
              static_cast<std::pair<std::atomic<int>*, std::atomic<int>*>*>(raw));
          if (!AllocateAndFreeFewObjects(7)) counters->second->fetch_add(1);
          counters->first->fetch_add(1);
          return nullptr;
        },
        arguments);
    ASSERT_EQ(error, 0) << "pthread_create failed: " << strerror(error);
    pthread_detach(thread);
    // Keep at most a batch running, so this does not exhaust thread limits.
    while (i + 1 - finished.load() > kBatchSize) std::this_thread::yield();
  }
  while (finished.load() < kThreads) std::this_thread::yield();
  stop.store(true);
  for (std::thread& thread : allocators) thread.join();
  EXPECT_EQ(damaged.load(), 0);

  // A detached thread still runs its exit (and frees its cache) after its
  // body returned, so wait until the kernel no longer lists it.
  const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (CountThreads() > threads_at_start && std::chrono::steady_clock::now() < give_up_at) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_LE(CountThreads(), threads_at_start)
      << "threads still running 20 s after every detached thread finished its body: "
      << ListThreadNames();
  const HeapStats after = SettleAndReadHeapStats();
  ExpectNoGrowth(before, after);
}

// Returns the process's minor page faults so far.
long MinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Runs `body` on 100 threads one after another as a warm-up, then on
// `thread_count` more in four rounds, and returns four times the minor page
// faults of the round with the fewest. The warden's decay, once a second,
// may purge pages that the threads of one round then fault in again (1 run
// in 30 measured 10,000 faults for 2,000 threads). A missing remedy shows
// in every round. Bodies that return false fail the test.
template <typename Body>
long FaultsOfSuccessiveThreads(int thread_count, Body body) {
  constexpr int kRounds = 4;
  EXPECT_EQ(RunThreadsInBatches(100, 1, body), 0) << "threads of the warm-up";
  long fewest = LONG_MAX;
  for (int round = 0; round < kRounds; ++round) {
    const long faults_before = MinorFaults();
    EXPECT_EQ(RunThreadsInBatches(thread_count / kRounds, 1, body), 0) << "round " << round;
    fewest = std::min(fewest, MinorFaults() - faults_before);
  }
  return kRounds * fewest;
}

// Threads started one after another, each the only one of its arena while it
// runs, must find the pages of the thread before them resident. jemalloc 5.3
// purges an arena whose last thread exits and zeroes a reused cache stack
// with madvise. Without memward's remedies each thread here faulted in about
// 22 pages.
TEST_F(ThreadChurnTest, SuccessiveThreadsReuseResidentPages) {
  constexpr int kThreads = 2000;
  constexpr size_t kSizes[] = {64, 256, 1024, 4096, 8192};
  const auto allocate_and_write = [&kSizes](int index) {
    void* blocks[std::size(kSizes) * 4] = {};
    for (size_t i = 0; i < std::size(blocks); ++i) {
      const size_t size = kSizes[i % std::size(kSizes)];
      blocks[i] = malloc(size);
      if (blocks[i] == nullptr) return false;
      FillPattern(blocks[i], size, static_cast<uint64_t>(index));
    }
    bool intact = true;
    for (size_t i = 0; i < std::size(blocks); ++i) {
      if (!CheckPattern(blocks[i], kSizes[i % std::size(kSizes)], static_cast<uint64_t>(index))) {
        intact = false;
      }
      free(blocks[i]);
    }
    return intact;
  };

  const long faults = FaultsOfSuccessiveThreads(kThreads, allocate_and_write);

  // glibc reuses a thread stack with its used pages resident, so the bound
  // leaves room for a fault or two per thread from the kernel and libc.
  EXPECT_LT(faults, 2 * kThreads) << faults << " minor page faults in " << kThreads
                                  << " successive threads";
}

// The same for successive threads that allocate past the cache warm-up
// (tcache_warmup, 256 KiB by default): the cache that the warm-up's end
// creates must reuse the cache stack of an exited thread without faulting
// it in. A cache created there with jemalloc's madvise zeroing cost about
// 4 faults per thread.
TEST_F(ThreadChurnTest, ThreadsPastWarmupReuseResidentPages) {
  constexpr int kThreads = 2000;
  constexpr size_t kBlockSize = 4096;
  constexpr size_t kBytesPerThread = 1024 * 1024;
  const auto allocate_past_warmup = [](int index) {
    for (size_t done = 0; done < kBytesPerThread; done += kBlockSize) {
      void* block = malloc(kBlockSize);
      if (block == nullptr) return false;
      FillPattern(block, 64, static_cast<uint64_t>(index));
      const bool intact = CheckPattern(block, 64, static_cast<uint64_t>(index));
      free(block);
      if (!intact) return false;
    }
    return true;
  };
  const long faults = FaultsOfSuccessiveThreads(kThreads, allocate_past_warmup);
  EXPECT_LT(faults, 2 * kThreads) << faults << " minor page faults in " << kThreads
                                  << " successive threads";
}

// The same for threads whose first memward call enters a tenant scope, as
// a worker that starts per request does. Such a thread used to create its
// jemalloc cache, its explicit cache and its block of slot caches on fresh
// pages: about 17 faults per thread.
TEST_F(ThreadChurnTest, ThreadsStartingInScopeReuseResidentPages) {
  constexpr int kThreads = 2000;
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.dedicated_arena = 1;
  memward_tenant_id tenant = 0;
  ASSERT_NO_FATAL_FAILURE(RegisterOrFindTenant("churn-scope-first", options, &tenant));

  const auto scope_then_untagged = [tenant](int index) {
    memward_scope saved;
    if (memward_scope_enter(tenant, &saved) != MEMWARD_OK) return false;
    void* scoped = malloc(200);
    if (scoped != nullptr) FillPattern(scoped, 200, static_cast<uint64_t>(index));
    const bool scoped_intact =
        scoped != nullptr && CheckPattern(scoped, 200, static_cast<uint64_t>(index));
    free(scoped);
    memward_scope_exit(&saved);

    void* untagged = malloc(1000);
    if (untagged == nullptr) return false;
    FillPattern(untagged, 1000, static_cast<uint64_t>(index));
    const bool untagged_intact = CheckPattern(untagged, 1000, static_cast<uint64_t>(index));
    free(untagged);
    return scoped_intact && untagged_intact;
  };

  const long faults = FaultsOfSuccessiveThreads(kThreads, scope_then_untagged);

  EXPECT_LT(faults, 2 * kThreads) << faults << " minor page faults in " << kThreads
                                  << " successive threads that started in a scope";
}

memward_tenant_id g_rearming_tenant = 0;
pthread_key_t g_rearming_key;

// A key destructor that enters a scope and sets its key again, so glibc
// calls it in every one of its PTHREAD_DESTRUCTOR_ITERATIONS rounds, also
// after memward's own exit key has released the thread's block.
void AllocateInRearmingScope() {
  memward_scope saved;
  if (memward_scope_enter(g_rearming_tenant, &saved) != MEMWARD_OK) return;
  free(malloc(120));
  memward_scope_exit(&saved);
}

void EnterScopeAndRearm(void* value) {
  AllocateInRearmingScope();
  pthread_setspecific(g_rearming_key, value);
}

// Each such thread left a block of slot caches (about 24 KB) in the thread
// list for good, its owner pointing into the exited thread's TLS.
TEST_F(ThreadChurnTest, RearmingKeyDestructorsLeaveNoBlocks) {
  constexpr int kThreads = 500;
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.dedicated_arena = 1;
  ASSERT_NO_FATAL_FAILURE(RegisterOrFindTenant("churn-rearming-key", options,
                                               &g_rearming_tenant));
  // memward creates its exit key at a thread's first scope. Created first,
  // it runs before this key's destructor in each round, so the last round
  // ends with the destructor's scope.
  AllocateInRearmingScope();
  ASSERT_EQ(pthread_key_create(&g_rearming_key, EnterScopeAndRearm), 0);
  memward_overhead before{};
  ASSERT_EQ(memward_overhead_get(&before), MEMWARD_OK);

  const int failures = RunThreadsInBatches(kThreads, 4, [](int) {
    pthread_setspecific(g_rearming_key, reinterpret_cast<void*>(1));
    void* block = malloc(10);
    free(block);
    return block != nullptr;
  });
  EXPECT_EQ(failures, 0);

  memward_overhead after{};
  ASSERT_EQ(memward_overhead_get(&after), MEMWARD_OK);
  // Up to 8 blocks of exited threads are kept for reuse.
  EXPECT_LT(after.thread_block_bytes, before.thread_block_bytes + 400 * 1024)
      << "thread blocks grew from " << before.thread_block_bytes << " to "
      << after.thread_block_bytes << " bytes over " << kThreads << " threads";
  memward_thread_flush();
  memward_tenant_stats stats{};
  ASSERT_EQ(memward_tenant_stats_get(g_rearming_tenant, &stats), MEMWARD_OK);
  EXPECT_EQ(stats.live_bytes, 0);
}

// Returns the dirty bytes of every arena, as of a fresh epoch.
size_t DirtyBytesOfAllArenas() {
  size_t pages = 0;
  size_t page_size = 0;
  if (!RefreshStats() || !ReadSizeValue("arenas.page", &page_size)) return SIZE_MAX;
  if (!ReadSizeValue("stats.arenas.4096.pdirty", &pages)) return SIZE_MAX;
  return pages * page_size;
}

// Returns the threads jemalloc counts on automatic arena `index`, or -1.
long ThreadsCountedOnArena(unsigned index) {
  if (!RefreshStats()) return -1;
  const std::string name = "stats.arenas." + std::to_string(index) + ".nthreads";
  unsigned threads = 0;
  size_t length = sizeof(threads);
  if (Mallctl()(name.c_str(), &threads, &length, nullptr, 0) != 0) return -1;
  return threads;
}

// After a burst of threads, the dirty pages of arenas that no thread uses
// any more must go back to the kernel within a few seconds, although the
// hold keeps jemalloc from purging them when the last thread exits.
TEST_F(ThreadChurnTest, IdleArenasReturnDirtyPages) {
  constexpr size_t kBlockSize = 64 * 1024;
  const auto allocate_and_free = [](int index) {
    void* blocks[64] = {};
    for (void*& block : blocks) {
      block = malloc(kBlockSize);
      if (block == nullptr) return false;
      FillPattern(block, kBlockSize, static_cast<uint64_t>(index));
    }
    for (void* block : blocks) free(block);
    return true;
  };
  ASSERT_EQ(RunThreadsInBatches(400, 4, allocate_and_free), 0);
  ASSERT_EQ(RunMallctlCommand("thread.tcache.flush"), 0);

  // dirty_decay is 1 s and the warden decays every arena each second.
  const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  size_t dirty = DirtyBytesOfAllArenas();
  while (dirty > kMiB && std::chrono::steady_clock::now() < give_up_at) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    dirty = DirtyBytesOfAllArenas();
  }
  EXPECT_LE(dirty, kMiB) << "dirty bytes 15 s after the threads exited";
}

// Threads that never overlap must not make jemalloc create every automatic
// arena (here 64), as they would if the hold counted a thread on arenas that
// do not all exist yet.
TEST_F(ThreadChurnTest, SequentialThreadsShareArenas) {
  const HelperRun result = RunHelper({"sequential-threads"}, {"MEMWARD_CONF=narenas=64"});
  EXPECT_TRUE(result.outcome.ExitedWithZero())
      << result.outcome.Describe() << "; its stderr:\n" << result.standard_error;
}

// Runs the helper in `mode` with MEMWARD_CONF set to `conf`, and expects it
// to exit with status 0.
void ExpectHelperSucceeds(const char* mode, const std::string& conf) {
  const HelperRun result = RunHelper({mode}, {"MEMWARD_CONF=" + conf});
  EXPECT_TRUE(result.outcome.ExitedWithZero())
      << mode << ": " << result.outcome.Describe() << "; its stderr:\n"
      << result.standard_error;
}

// Threads started in a burst get their jemalloc cache only after a
// warm-up of allocations, so that short ones reserve no cached batches.
// The main thread and a lone thread get it at once.
TEST_F(ThreadChurnTest, BurstThreadsWarmUpCache) { ExpectHelperSucceeds("cache-warmup", ""); }

// The same with sample_interval=64, where nearly every allocation crosses
// the sampler's countdown. The bytes of a crossing past the countdown count
// toward the warm-up too. Without them a 256 KiB warm-up lasted past 64 MiB.
TEST_F(ThreadChurnTest, WarmupEndsWithSmallSampleInterval) {
  ExpectHelperSucceeds("cache-warmup", "sample_interval=64");
}

// A warm-up that would end in glibc's last key-destructor pass, after
// jemalloc's own destructor, ends at the thread's exit instead. A cache
// created there was never cleaned up, and a later thread crashed on it.
TEST_F(ThreadChurnTest, WarmupEndsBeforeKeyDestructors) {
  ExpectHelperSucceeds("warmup-ends-in-last-destructor-pass", "");
}

TEST_F(ThreadChurnTest, ZeroWarmupGivesCacheAtStart) {
  ExpectHelperSucceeds("cache-at-start", "tcache_warmup=0");
}

// Returns the calling thread's arena.
unsigned ArenaOfCallingThread() {
  unsigned index = 0;
  size_t length = sizeof(index);
  Mallctl()("thread.arena", &index, &length, nullptr, 0);
  return index;
}

// With two automatic arenas, a program's main thread and the one thread it
// starts (a two-thread benchmark) must not share an arena. memward's warden
// thread, idle most of the time, must not tip jemalloc's choice towards the
// main thread's arena.
TEST_F(ThreadChurnTest, NewThreadAvoidsMainThreadArena) {
  unsigned automatic = 0;
  size_t length = sizeof(automatic);
  ASSERT_EQ(Mallctl()("opt.narenas", &automatic, &length, nullptr, 0), 0);
  if (automatic != 2) GTEST_SKIP() << automatic << " automatic arenas; the case needs 2";

  const unsigned main_arena = ArenaOfCallingThread();
  for (int round = 0; round < 20; ++round) {
    unsigned worker_arena = main_arena;
    std::thread([&worker_arena] { worker_arena = ArenaOfCallingThread(); }).join();
    ASSERT_NE(worker_arena, main_arena) << "round " << round;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// A forked child must hold its arenas again: jemalloc's child fork handler
// resets every arena's thread count to the forking thread's alone.
TEST_F(ThreadChurnTest, ArenaHoldSurvivesFork) {
  unsigned automatic = 0;
  size_t length = sizeof(automatic);
  ASSERT_EQ(Mallctl()("opt.narenas", &automatic, &length, nullptr, 0), 0);
  if (automatic < 2) GTEST_SKIP() << "one automatic arena: every thread shares arena 0";

  // Threads running two at a time create every automatic arena, and the
  // warden's first decay allows the hold. Wait until both have happened.
  const auto give_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  long counted = 0;
  while (std::chrono::steady_clock::now() < give_up_at) {
    RunThreadsInBatches(2 * static_cast<int>(automatic), static_cast<int>(automatic),
                        AllocateAndFreeFewObjects);
    counted = ThreadsCountedOnArena(automatic - 1);
    if (counted >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(counted, 1) << "no extra thread on the last automatic arena after 15 s";

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Right after fork, before the child's warden runs, a new thread must
    // not share arena 0 with the main thread either.
    const unsigned first_main_arena = ArenaOfCallingThread();
    unsigned first_worker_arena = first_main_arena;
    std::thread([&first_worker_arena] { first_worker_arena = ArenaOfCallingThread(); }).join();
    if (first_worker_arena == first_main_arena) _exit(3);

    // The child's warden restarts, moves to arena 0 and decays within about
    // a second; only then does the hold come back. Arena 0 then counts the
    // main thread and the warden.
    const auto child_gives_up_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ThreadsCountedOnArena(automatic - 1) < 1 || ThreadsCountedOnArena(0) < 2) {
      if (std::chrono::steady_clock::now() > child_gives_up_at) _exit(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // The child's first thread must not share arena 0 with its main thread.
    const unsigned main_arena = ArenaOfCallingThread();
    unsigned worker_arena = main_arena;
    std::thread([&worker_arena] { worker_arena = ArenaOfCallingThread(); }).join();
    _exit(worker_arena != main_arena ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 1) << "the child counts no thread on the last automatic arena";
  EXPECT_NE(WEXITSTATUS(status), 2) << "a thread of the held child shares the main thread's arena";
  EXPECT_NE(WEXITSTATUS(status), 3) << "the child's first thread shares the main thread's arena";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace memward_test
