// memward's own per-thread state through thread exit and fork. A thread
// that enters a tenant scope gets a ThreadBlock from memward's arena, one
// jemalloc explicit cache per tenant arena it uses, and an unpublished batch
// of counts. When the thread exits, all three must be returned or published.
// After a fork, the child must be able to use scopes and requests although
// the threads that held them are gone.
#include <pthread.h>
#include <sys/resource.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "process_test_support.h"

namespace memward_test {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;
constexpr int kBatchSize = 50;

// The tenants these tests use: two in memward's shared arena (each block
// carries an owner header) and one with an arena of its own.
struct TestTenants {
  memward_tenant_id shared[2] = {};
  memward_tenant_id dedicated = 0;
};
TestTenants tenants;

void RegisterTenant(const char* name, bool dedicated_arena, memward_tenant_id* id) {
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  options.dedicated_arena = dedicated_arena ? 1 : 0;
  RegisterOrFindTenant(name, options, id);
}

memward_tenant_stats ReadTenant(memward_tenant_id id) {
  memward_tenant_stats stats{};
  const int status = memward_tenant_stats_get(id, &stats);
  EXPECT_EQ(status, MEMWARD_OK) << "memward_tenant_stats_get(" << id
                                << "): " << memward_strerror(status);
  return stats;
}

std::string FormatTenant(const memward_tenant_stats& stats) {
  return std::string(stats.name) + ": live " + std::to_string(stats.live_bytes) + " B, " +
         std::to_string(stats.allocations) + " allocations, " + std::to_string(stats.frees) +
         " frees";
}

// Sizes a scoped thread allocates: memward's own cache keeps blocks up to
// 1 KiB, jemalloc's explicit cache up to 32 KiB, and the rest go to the
// arena directly.
constexpr size_t kScopedSizes[] = {8, 40, 200, 1000, 3000, 20000, 40000, 300000};

// Allocates and frees blocks of every scoped size with malloc and new,
// twice, checking their contents. Returns false on a failed allocation or
// a damaged block.
bool AllocateAndFreeInScope(uint64_t seed) {
  bool intact = true;
  for (int round = 0; round < 2; ++round) {
    void* blocks[std::size(kScopedSizes)] = {};
    for (size_t i = 0; i < std::size(kScopedSizes); ++i) {
      blocks[i] = malloc(kScopedSizes[i]);
      if (blocks[i] == nullptr) return false;
      FillPattern(blocks[i], kScopedSizes[i], seed + i);
    }
    for (size_t i = 0; i < std::size(kScopedSizes); ++i) {
      if (!CheckPattern(blocks[i], kScopedSizes[i], seed + i)) intact = false;
      free(blocks[i]);
    }
  }
  auto strings = std::make_unique<std::vector<std::string>>(20, std::string(100, 's'));
  return intact && strings->back().size() == 100;
}

// What a churn thread does in its scope, chosen by its index.
enum class ScopeUse {
  kSharedScope,     // scope of a shared-arena tenant, exited before the thread ends
  kDedicatedScope,  // scope of the dedicated-arena tenant, exited
  kRequest,         // a request of a shared-arena tenant, ended
  kExitInScope,     // scope of the dedicated tenant, still entered when the thread ends
};

bool RunScopedThreadBody(int index) {
  const auto use = static_cast<ScopeUse>(index % 4);
  const auto seed = static_cast<uint64_t>(index);
  memward_scope saved{};
  switch (use) {
    case ScopeUse::kSharedScope: {
      if (memward_scope_enter(tenants.shared[index % 2], &saved) != MEMWARD_OK) return false;
      const bool intact = AllocateAndFreeInScope(seed);
      return memward_scope_exit(&saved) == MEMWARD_OK && intact;
    }
    case ScopeUse::kDedicatedScope: {
      if (memward_scope_enter(tenants.dedicated, &saved) != MEMWARD_OK) return false;
      const bool intact = AllocateAndFreeInScope(seed);
      return memward_scope_exit(&saved) == MEMWARD_OK && intact;
    }
    case ScopeUse::kRequest: {
      memward_request request{};
      if (memward_request_begin(tenants.shared[1], &request) != MEMWARD_OK) return false;
      const bool intact = AllocateAndFreeInScope(seed);
      memward_request_summary summary{};
      return memward_request_end(&request, &summary) == MEMWARD_OK && intact;
    }
    case ScopeUse::kExitInScope:
      if (memward_scope_enter(tenants.dedicated, &saved) != MEMWARD_OK) return false;
      return AllocateAndFreeInScope(seed);
  }
  return false;
}

// Runs `thread_count` threads, kBatchSize at a time, each calling `body`
// with its index. Returns the number of bodies that returned false.
template <typename Body>
int RunThreadsInBatches(int thread_count, Body body) {
  std::atomic<int> failures{0};
  for (int first = 0; first < thread_count; first += kBatchSize) {
    std::vector<std::thread> batch;
    for (int index = first; index < first + kBatchSize && index < thread_count; ++index) {
      batch.emplace_back([&failures, &body, index] {
        if (!body(index)) failures.fetch_add(1);
      });
    }
    for (std::thread& thread : batch) thread.join();
  }
  return failures.load();
}

// A snapshot of the heap and of the test tenants' and memward's counters.
struct Snapshot {
  HeapStats heap;
  std::vector<memward_tenant_stats> tenant_stats;
};

Snapshot TakeSnapshot() {
  Snapshot snapshot;
  EXPECT_EQ(memward_thread_flush(), MEMWARD_OK);
  snapshot.heap = SettleAndReadHeapStats();
  for (memward_tenant_id id :
       {tenants.shared[0], tenants.shared[1], tenants.dedicated, memward_tenant_id{1}}) {
    snapshot.tenant_stats.push_back(ReadTenant(id));
  }
  return snapshot;
}

// Every block the test tenants allocated was freed, and every thread that
// held counts has exited and so published them. Their live bytes must be
// back where they were, exactly. memward's own tenant holds the thread
// blocks, about 14 KiB each, so one left behind per thread would add
// megabytes, and 256 KiB leaves room for blocks memward allocates once.
void ExpectNothingLeft(const Snapshot& before, const Snapshot& after) {
  constexpr int64_t kMemwardGrowthBound = 256 * kKiB;
  for (size_t i = 0; i < before.tenant_stats.size(); ++i) {
    const memward_tenant_stats& old_stats = before.tenant_stats[i];
    const memward_tenant_stats& new_stats = after.tenant_stats[i];
    if (old_stats.id == 1) {
      EXPECT_LT(new_stats.live_bytes - old_stats.live_bytes, kMemwardGrowthBound)
          << "memward's own memory grew\n before: " << FormatTenant(old_stats)
          << "\n after:  " << FormatTenant(new_stats);
      continue;
    }
    EXPECT_EQ(new_stats.live_bytes, old_stats.live_bytes)
        << "live bytes of a tenant whose blocks were all freed changed\n before: "
        << FormatTenant(old_stats) << "\n after:  " << FormatTenant(new_stats);
    EXPECT_EQ(new_stats.allocations - new_stats.frees, old_stats.allocations - old_stats.frees)
        << "allocations without frees\n before: " << FormatTenant(old_stats)
        << "\n after:  " << FormatTenant(new_stats);
  }

  // The same bounds, and the same reasons, as in thread_churn_test.cc.
  EXPECT_LT(after.heap.allocated, before.heap.allocated + 1 * kMiB)
      << "stats.allocated grew\n before: " << FormatHeapStats(before.heap)
      << "\n after:  " << FormatHeapStats(after.heap);
  EXPECT_LT(after.heap.resident, before.heap.resident + 4 * kMiB)
      << "stats.resident grew\n before: " << FormatHeapStats(before.heap)
      << "\n after:  " << FormatHeapStats(after.heap);
}

class TenantLifecycleTest : public ProcessTest {
 protected:
  void SetUp() override {
    ProcessTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(RegisterTenant("process-test-shared-0", false, &tenants.shared[0]));
    ASSERT_NO_FATAL_FAILURE(RegisterTenant("process-test-shared-1", false, &tenants.shared[1]));
    ASSERT_NO_FATAL_FAILURE(RegisterTenant("process-test-dedicated", true, &tenants.dedicated));
  }
};

TEST_F(TenantLifecycleTest, ScopedThreadChurnLeavesNothing) {
  ASSERT_EQ(RunThreadsInBatches(2 * kBatchSize, RunScopedThreadBody), 0);
  const Snapshot before = TakeSnapshot();

  const int failures = RunThreadsInBatches(10000, RunScopedThreadBody);
  EXPECT_EQ(failures, 0) << "threads whose scope calls failed or whose blocks were damaged";

  const Snapshot after = TakeSnapshot();
  ExpectNothingLeft(before, after);

  // Every thread above but those in requests took one of jemalloc's
  // explicit caches, and jemalloc 5.3 has 4,095 in all. Had exiting threads
  // not destroyed theirs, none would be left.
  std::vector<unsigned> created;
  for (int i = 0; i < 100; ++i) {
    unsigned index = 0;
    size_t length = sizeof index;
    const int error = Mallctl()("tcache.create", &index, &length, nullptr, 0);
    ASSERT_EQ(error, 0) << "tcache.create failed after " << i
                        << " caches: exiting threads did not return theirs";
    created.push_back(index);
  }
  for (unsigned index : created) {
    EXPECT_EQ(Mallctl()("tcache.destroy", nullptr, nullptr, &index, sizeof index), 0);
  }
}

// A pthread key destructor that runs after memward's and jemalloc's own:
// both create their keys before the test does, and glibc runs key
// destructors in key order, which is the order of creation here. It frees a block the
// thread allocated in a scope, enters a scope of another tenant and
// allocates and frees there, the way a library's thread clean-up may.
// memward must still place and count these blocks, and return whatever
// per-thread state they recreate.
struct LateDestructorWork {
  void* block = nullptr;  // allocated in the thread's scope, freed late
  int index = 0;          // the thread's index, which chooses what it does
};
pthread_key_t late_key;
// The result of UsableSizeInSharedScope() on the main thread.
size_t expected_usable_size = 0;
std::atomic<int> late_destructor_failures{0};
std::atomic<int> late_usable_size_mismatches{0};

// Returns malloc_usable_size of a 112-byte block allocated in a scope of
// the first shared-arena tenant. memward puts an owner header in front of
// such blocks, so the usable size is the size class less the header. After
// jemalloc has torn down a thread's state, memward serves the block as
// untagged memory, without a header, so only a smaller size is an error.
size_t UsableSizeInSharedScope() {
  memward_scope saved{};
  if (memward_scope_enter(tenants.shared[0], &saved) != MEMWARD_OK) return 0;
  void* block = malloc(112);
  const size_t usable = malloc_usable_size(block);
  free(block);
  memward_scope_exit(&saved);
  return usable;
}

void RunLateDestructor(void* value) {
  std::unique_ptr<LateDestructorWork> work(static_cast<LateDestructorWork*>(value));
  free(work->block);
  if (UsableSizeInSharedScope() < expected_usable_size) late_usable_size_mismatches.fetch_add(1);
  memward_scope saved{};
  if (memward_scope_enter(tenants.shared[0], &saved) != MEMWARD_OK ||
      !AllocateAndFreeInScope(static_cast<uint64_t>(work->index)) ||
      memward_scope_exit(&saved) != MEMWARD_OK) {
    late_destructor_failures.fetch_add(1);
  }
  // Left in a scope, as a clean-up that never returns to the thread's own
  // code would leave it.
  if (work->index % 2 == 0) memward_scope_enter(tenants.dedicated, &saved);
  void* late_block = malloc(300);
  free(late_block);
}

TEST_F(TenantLifecycleTest, AllocationInLatePthreadDestructors) {
  // A scope on this thread makes memward create its key before late_key.
  memward_scope saved{};
  ASSERT_EQ(memward_scope_enter(tenants.shared[1], &saved), MEMWARD_OK);
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  ASSERT_EQ(pthread_key_create(&late_key, RunLateDestructor), 0);

  const auto body = [](int index) {
    auto* work = new LateDestructorWork;
    work->index = index;
    // Half the threads use the shared tenant in their body, so memward's
    // cache for it exists when the destructor runs.
    if (index % 2 == 0) UsableSizeInSharedScope();
    memward_scope scope{};
    if (memward_scope_enter(tenants.dedicated, &scope) != MEMWARD_OK) return false;
    work->block = malloc(static_cast<size_t>(100 + index % 5000));
    pthread_setspecific(late_key, work);
    // Half the threads end inside the scope.
    if (index % 2 == 1) memward_scope_exit(&scope);
    return work->block != nullptr;
  };
  expected_usable_size = UsableSizeInSharedScope();
  ASSERT_EQ(RunThreadsInBatches(2 * kBatchSize, body), 0);
  const Snapshot before = TakeSnapshot();
  EXPECT_EQ(RunThreadsInBatches(2000, body), 0);
  const Snapshot after = TakeSnapshot();
  EXPECT_EQ(late_destructor_failures.load(), 0) << "scopes in late destructors failed";
  EXPECT_EQ(late_usable_size_mismatches.load(), 0)
      << "threads whose late destructor saw a malloc_usable_size below "
      << expected_usable_size
      << " for a 112-byte block in a shared-arena scope";
  ExpectNothingLeft(before, after);
  pthread_key_delete(late_key);
}

// Blocks allocated in a scope and freed by another thread, outside any
// scope, after the allocating thread exited: the free must be credited to
// the owning tenant. And the reverse: blocks the main thread allocates in a
// scope, freed by threads that then exit.
TEST_F(TenantLifecycleTest, ForeignFreesCreditOwner) {
  constexpr int kThreads = 1000;
  constexpr int kBlocksPerThread = 24;
  const auto block_size = [](size_t i) { return kScopedSizes[i % std::size(kScopedSizes)]; };

  const Snapshot before = TakeSnapshot();
  int damaged = 0;
  for (int first = 0; first < kThreads; first += kBatchSize) {
    std::vector<std::vector<void*>> received(kBatchSize);
    std::vector<std::thread> batch;
    for (int index = 0; index < kBatchSize; ++index) {
      batch.emplace_back([&received, &block_size, index] {
        memward_scope saved{};
        const memward_tenant_id tenant =
            index % 3 == 0 ? tenants.dedicated : tenants.shared[index % 2];
        if (memward_scope_enter(tenant, &saved) != MEMWARD_OK) return;
        for (size_t i = 0; i < kBlocksPerThread; ++i) {
          void* block = malloc(block_size(i));
          if (block != nullptr) FillPattern(block, block_size(i), i);
          received[static_cast<size_t>(index)].push_back(block);
        }
        // Half the threads end still inside their scope.
        if (index % 2 == 0) memward_scope_exit(&saved);
      });
    }
    for (std::thread& thread : batch) thread.join();
    for (const std::vector<void*>& blocks : received) {
      if (blocks.size() != kBlocksPerThread) ++damaged;
      for (size_t i = 0; i < blocks.size(); ++i) {
        if (blocks[i] == nullptr || !CheckPattern(blocks[i], block_size(i), i)) ++damaged;
        free(blocks[i]);
      }
    }
  }
  EXPECT_EQ(damaged, 0) << "blocks that were missing, null or damaged";

  for (int first = 0; first < kThreads; first += kBatchSize) {
    std::vector<std::vector<void*>> handed(kBatchSize);
    for (size_t index = 0; index < handed.size(); ++index) {
      memward_scope saved{};
      const memward_tenant_id tenant =
          index % 3 == 0 ? tenants.dedicated : tenants.shared[index % 2];
      ASSERT_EQ(memward_scope_enter(tenant, &saved), MEMWARD_OK);
      for (size_t i = 0; i < kBlocksPerThread; ++i) handed[index].push_back(malloc(block_size(i)));
      ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
    }
    std::vector<std::thread> batch;
    for (size_t index = 0; index < handed.size(); ++index) {
      batch.emplace_back([&handed, index] {
        // Some free inside a scope of another tenant, some outside any.
        memward_scope saved{};
        const bool scoped = index % 2 == 1;
        if (scoped) memward_scope_enter(tenants.shared[0], &saved);
        for (void* block : handed[index]) free(block);
        if (scoped) memward_scope_exit(&saved);
      });
    }
    for (std::thread& thread : batch) thread.join();
  }

  const Snapshot after = TakeSnapshot();
  ExpectNothingLeft(before, after);
}

// Threads that cycle through scopes and requests of every test tenant,
// at nice 19 for the reason given in fork_test.cc.
class ScopedWorkers {
 public:
  explicit ScopedWorkers(int count) {
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, i] {
        setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
        started_.fetch_add(1);
        for (int round = 0; !stop_.load(std::memory_order_relaxed); ++round) {
          if (!RunScopedThreadBody(i + round * 4 + 1)) failures_.fetch_add(1);
        }
      });
    }
    while (started_.load() < count) std::this_thread::yield();
  }
  ~ScopedWorkers() { Stop(); }
  void Stop() {
    stop_.store(true);
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  int failures() const { return failures_.load(); }

 private:
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> started_{0};
  std::atomic<int> failures_{0};
};

// Exit codes of the forked child; each names the first check that failed.
enum ChildExit : int {
  kChildOk = 0,
  kStatsFailed = 10,
  kScopeFailed = 11,
  kRequestFailed = 12,
  kChildThreadFailed = 13,
  kFlushFailed = 14,
  kRegistrationFailed = 15,
};

int RunScopedChild(int iteration) {
  for (memward_tenant_id id : {tenants.shared[0], tenants.shared[1], tenants.dedicated}) {
    memward_tenant_stats stats{};
    if (memward_tenant_stats_get(id, &stats) != MEMWARD_OK) {
      WriteToStderr("child: memward_tenant_stats_get failed");
      return kStatsFailed;
    }
  }
  memward_scope saved{};
  if (memward_scope_enter(tenants.dedicated, &saved) != MEMWARD_OK ||
      !AllocateAndFreeInScope(static_cast<uint64_t>(iteration)) ||
      memward_scope_exit(&saved) != MEMWARD_OK) {
    WriteToStderr("child: a scope of the dedicated-arena tenant failed");
    return kScopeFailed;
  }
  memward_request request{};
  if (memward_request_begin(tenants.shared[1], &request) != MEMWARD_OK ||
      !AllocateAndFreeInScope(static_cast<uint64_t>(iteration) + 1) ||
      memward_request_end(&request, nullptr) != MEMWARD_OK) {
    WriteToStderr("child: a request failed");
    return kRequestFailed;
  }
  if (iteration % 3 == 0) {
    std::atomic<bool> ok{true};
    std::thread thread([&ok, iteration] {
      for (int round = 0; round < 4; ++round) {
        if (!RunScopedThreadBody(iteration + round)) ok.store(false);
      }
    });
    thread.join();
    if (!ok.load()) {
      WriteToStderr("child: a scoped thread started in the child failed");
      return kChildThreadFailed;
    }
  }
  if (memward_thread_flush() != MEMWARD_OK) {
    WriteToStderr("child: memward_thread_flush failed");
    return kFlushFailed;
  }
  // The registry lock was held across the fork; the child must be able to
  // take it again. The names are per child, so each registration is new.
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  const std::string name = "process-test-child-" + std::to_string(getpid());
  memward_tenant_id child_tenant = 0;
  if (memward_tenant_register(name.c_str(), &options, &child_tenant) != MEMWARD_OK ||
      memward_scope_enter(child_tenant, &saved) != MEMWARD_OK ||
      !AllocateAndFreeInScope(static_cast<uint64_t>(iteration) + 2) ||
      memward_scope_exit(&saved) != MEMWARD_OK) {
    WriteToStderr("child: registering and using a new tenant failed");
    return kRegistrationFailed;
  }
  return kChildOk;
}

TEST_F(TenantLifecycleTest, ForkWhileThreadsAreInScopes) {
  ScopedWorkers workers(4);
  // The forking thread is itself inside a scope for half the forks.
  for (int iteration = 0; iteration < 100; ++iteration) {
    memward_scope saved{};
    const bool scoped = iteration % 2 == 1;
    if (scoped) {
      ASSERT_EQ(memward_scope_enter(tenants.shared[0], &saved), MEMWARD_OK);
    }
    void* parent_block = malloc(500);
    fflush(nullptr);

    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed: " << strerror(errno);
    if (pid == 0) {
      ArmChildAlarm();
      // The parent's block, allocated in the scope before the fork, is
      // freed in the child.
      free(parent_block);
      if (scoped) memward_scope_exit(&saved);
      const int code = RunScopedChild(iteration);
      if (iteration % 4 < 2) _exit(code);
      exit(code);
    }

    free(parent_block);
    if (scoped) {
      ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
    }
    const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
    ASSERT_TRUE(outcome.ExitedWithZero()) << "child of fork " << iteration << " "
                                          << outcome.Describe();
  }
  workers.Stop();
  EXPECT_EQ(workers.failures(), 0) << "scope calls failed or blocks were damaged in the parent";
}

// Forks while scoped threads start and exit and another thread registers
// tenants. Forks then land in the middle of changes to memward's thread
// list: a thread links its block on its first scope and unlinks it at exit.
// They also land in explicit cache creation and destruction and in tenant
// registration. Each of these runs under its own lock.
TEST_F(TenantLifecycleTest, ForkWhileScopedThreadsComeAndGo) {
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::thread churn([&stop, &failures] {
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
    for (int first = 0; !stop.load(std::memory_order_relaxed); first += 8) {
      failures.fetch_add(RunThreadsInBatches(8, [first](int index) {
        setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
        return RunScopedThreadBody(first + index);
      }));
    }
  });
  std::thread registration([&stop] {
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
    memward_tenant_options options;
    memward_tenant_options_init(&options);
    // Once the tenant table is full, registration fails fast, but still
    // takes the registry lock.
    for (int i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      const std::string name = "process-test-fork-" + std::to_string(i % 2000);
      memward_tenant_id id = 0;
      memward_tenant_register(name.c_str(), &options, &id);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });

  for (int iteration = 0; iteration < 100; ++iteration) {
    fflush(nullptr);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed: " << strerror(errno);
    if (pid == 0) {
      ArmChildAlarm();
      const int code = RunScopedChild(iteration);
      _exit(code);
    }
    const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
    ASSERT_TRUE(outcome.ExitedWithZero()) << "child of fork " << iteration << " "
                                          << outcome.Describe();
  }
  stop.store(true);
  churn.join();
  registration.join();
  EXPECT_EQ(failures.load(), 0) << "scoped threads in the parent failed";
}

}  // namespace
}  // namespace memward_test
