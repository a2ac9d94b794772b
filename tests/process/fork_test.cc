// fork, vfork, posix_spawn and exec from a process whose other threads are
// busy in the allocator. A child of a multithreaded fork inherits only the
// forking thread, so every allocator lock that another thread held at that
// moment must have been taken before the fork and released or reset in the
// child. A lock missed there deadlocks the child on its first allocation.
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "process_test_support.h"

extern char** environ;

namespace memward_test {
namespace {

// How an AllocationWorkers block was obtained, so it is freed the same way.
enum class BlockKind { kMalloc, kCalloc, kRealloc, kPosixMemalign, kNewArray, kAlignedNew };

struct Block {
  void* address = nullptr;
  size_t size = 0;
  size_t alignment = 0;
  BlockKind kind = BlockKind::kMalloc;
  uint64_t seed = 0;
};

// Threads that allocate, check and free blocks until stopped: mostly small
// sizes that the thread cache serves, some up to 256 KiB and one in 500
// up to 4 MiB, from every allocation function. Each keeps up to 64 live
// blocks and checks a block's pattern before freeing it. The threads run at
// nice 19: at equal priority, 8 busy threads on 2 cores leave the forking
// thread and its children so little CPU that 200 forks take minutes. They
// still run whenever the forking thread waits, so most forks find some of
// them inside the allocator.
class AllocationWorkers {
 public:
  explicit AllocationWorkers(int count) {
    for (int i = 0; i < count; ++i) threads_.emplace_back([this, i] { Run(i); });
    // Let every thread reach its loop, so that forks start under load.
    while (started_.load() < count) std::this_thread::yield();
  }
  ~AllocationWorkers() { Stop(); }

  void Stop() {
    stop_.store(true);
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  uint64_t corrupted_blocks() const { return corrupted_blocks_.load(); }
  uint64_t failed_allocations() const { return failed_allocations_.load(); }
  uint64_t operations() const { return operations_.load(); }

 private:
  static constexpr int kSlots = 64;

  void Run(int index) {
    Random random(static_cast<uint64_t>(index) + 1);
    Block slots[kSlots];
    uint64_t operations = 0;
    setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
    started_.fetch_add(1);
    while (!stop_.load(std::memory_order_relaxed)) {
      Block& slot = slots[random.Next() % kSlots];
      if (slot.address != nullptr) Release(slot);
      Acquire(slot, random);
      ++operations;
    }
    for (Block& slot : slots) {
      if (slot.address != nullptr) Release(slot);
    }
    operations_.fetch_add(operations);
  }

  static size_t PickSize(Random& random) {
    const uint64_t bucket = random.Next() % 1000;
    if (bucket < 700) return random.Between(1, 512);
    if (bucket < 920) return random.Between(513, 32 * 1024);
    if (bucket < 998) return random.Between(32 * 1024 + 1, 256 * 1024);
    return random.Between(256 * 1024 + 1, 4 * 1024 * 1024);
  }

  void Acquire(Block& slot, Random& random) {
    slot.size = PickSize(random);
    slot.seed = random.Next();
    slot.kind = static_cast<BlockKind>(random.Next() % 6);
    slot.alignment = size_t{64} << (random.Next() % 7);  // 64 .. 4096
    void* address = nullptr;
    switch (slot.kind) {
      case BlockKind::kMalloc:
        address = malloc(slot.size);
        break;
      case BlockKind::kCalloc:
        address = calloc(1, slot.size);
        if (address != nullptr && !IsZero(address, slot.size)) corrupted_blocks_.fetch_add(1);
        break;
      case BlockKind::kRealloc:
        // Grow a small block in two steps, so both in-place and moving
        // reallocation run.
        address = malloc(slot.size / 4 + 1);
        if (address != nullptr) {
          void* grown = realloc(address, slot.size);
          if (grown == nullptr) free(address);
          address = grown;
        }
        break;
      case BlockKind::kPosixMemalign:
        if (posix_memalign(&address, slot.alignment, slot.size) != 0) address = nullptr;
        break;
      case BlockKind::kNewArray:
        address = new (std::nothrow) unsigned char[slot.size];
        break;
      case BlockKind::kAlignedNew:
        address = ::operator new(slot.size, std::align_val_t(slot.alignment), std::nothrow);
        break;
    }
    if (address == nullptr) {
      failed_allocations_.fetch_add(1);
      slot.address = nullptr;
      return;
    }
    FillPattern(address, slot.size, slot.seed);
    slot.address = address;
  }

  void Release(Block& slot) {
    if (!CheckPattern(slot.address, slot.size, slot.seed)) corrupted_blocks_.fetch_add(1);
    switch (slot.kind) {
      case BlockKind::kMalloc:
      case BlockKind::kCalloc:
      case BlockKind::kRealloc:
      case BlockKind::kPosixMemalign:
        free(slot.address);
        break;
      case BlockKind::kNewArray:
        delete[] static_cast<unsigned char*>(slot.address);
        break;
      case BlockKind::kAlignedNew:
        ::operator delete(slot.address, slot.size, std::align_val_t(slot.alignment));
        break;
    }
    slot.address = nullptr;
  }

  static bool IsZero(const void* address, size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(address);
    for (size_t i = 0; i < size; ++i) {
      if (bytes[i] != 0) return false;
    }
    return true;
  }

  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> started_{0};
  std::atomic<uint64_t> corrupted_blocks_{0};
  std::atomic<uint64_t> failed_allocations_{0};
  std::atomic<uint64_t> operations_{0};
};

// Blocks the parent allocates just before a fork. The child checks and frees
// its copies, which makes the child's allocator free memory that was live
// in the parent's arenas and thread caches at the fork.
struct InheritedBlocks {
  static constexpr size_t kSizes[] = {24, 700, 9000, 40 * 1024, 3 * 1024 * 1024};
  void* blocks[std::size(kSizes)] = {};

  void Allocate(uint64_t seed) {
    for (size_t i = 0; i < std::size(kSizes); ++i) {
      blocks[i] = malloc(kSizes[i]);
      if (blocks[i] != nullptr) FillPattern(blocks[i], kSizes[i], seed + i);
    }
  }
  bool CheckAndFree(uint64_t seed) {
    bool intact = true;
    for (size_t i = 0; i < std::size(kSizes); ++i) {
      if (blocks[i] == nullptr || !CheckPattern(blocks[i], kSizes[i], seed + i)) intact = false;
      free(blocks[i]);
      blocks[i] = nullptr;
    }
    return intact;
  }
};

// Exit codes of a forked child. Each names the first check that failed.
enum ChildExit : int {
  kChildOk = 0,
  kInheritedBlocksDamaged = 10,
  kSmallBlocksFailed = 11,
  kContainersFailed = 12,
  kLargeBlocksFailed = 13,
  kChildThreadsFailed = 14,
  kGrandchildFailed = 15,
  kStatsFailed = 16,
  kMaintenanceFailed = 17,
};

// Allocates, fills, checks and frees `count` blocks of up to `max_size`
// bytes, keeping up to 32 live at a time.
bool ChurnBlocks(uint64_t seed, int count, size_t max_size) {
  Random random(seed);
  void* live[32] = {};
  size_t sizes[32] = {};
  bool intact = true;
  for (int i = 0; i < count; ++i) {
    const size_t slot = random.Next() % 32;
    if (live[slot] != nullptr) {
      if (!CheckPattern(live[slot], sizes[slot], seed + slot)) intact = false;
      free(live[slot]);
    }
    sizes[slot] = random.Between(1, max_size);
    live[slot] = malloc(sizes[slot]);
    if (live[slot] == nullptr) return false;
    FillPattern(live[slot], sizes[slot], seed + slot);
  }
  for (size_t slot = 0; slot < 32; ++slot) {
    if (live[slot] == nullptr) continue;
    if (!CheckPattern(live[slot], sizes[slot], seed + slot)) intact = false;
    free(live[slot]);
  }
  return intact;
}

bool UseContainers(int iteration) {
  std::vector<std::string> strings;
  std::map<int, std::unique_ptr<std::vector<int>>> map;
  for (int i = 0; i < 500; ++i) {
    strings.push_back("string number " + std::to_string(i) + " of child " +
                      std::to_string(iteration) + " long enough to live on the heap");
    map[i] = std::make_unique<std::vector<int>>(static_cast<size_t>(i % 50) + 1, i);
  }
  for (int i = 0; i < 500; ++i) {
    if (strings[static_cast<size_t>(i)].find(std::to_string(i)) == std::string::npos) return false;
    if (map[i]->size() != static_cast<size_t>(i % 50) + 1 || map[i]->back() != i) return false;
  }
  return true;
}

// Blocks of 1 and 4 MiB and a realloc chain up to 8 MiB: larger than any
// cache, they come straight from the arenas and the page allocator.
bool UseLargeBlocks(uint64_t seed) {
  constexpr size_t kSizes[] = {1024 * 1024, 4 * 1024 * 1024};
  void* blocks[std::size(kSizes)] = {};
  bool intact = true;
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    blocks[i] = malloc(kSizes[i]);
    if (blocks[i] == nullptr) return false;
    FillPattern(blocks[i], kSizes[i], seed + i);
  }
  for (size_t i = 0; i < std::size(kSizes); ++i) {
    if (!CheckPattern(blocks[i], kSizes[i], seed + i)) intact = false;
    free(blocks[i]);
  }
  void* chain = nullptr;
  for (size_t size = 4096; size <= 8 * 1024 * 1024; size *= 4) {
    void* grown = realloc(chain, size);
    if (grown == nullptr) {
      free(chain);
      return false;
    }
    chain = grown;
    static_cast<unsigned char*>(chain)[size - 1] = 0x5a;
  }
  free(chain);
  return intact;
}

bool RunThreadsInChild(uint64_t seed) {
  std::atomic<bool> intact{true};
  std::vector<std::thread> threads;
  for (uint64_t i = 0; i < 4; ++i) {
    threads.emplace_back([&intact, seed, i] {
      if (!ChurnBlocks(seed * 8 + i, 1000, 64 * 1024)) intact.store(false);
      auto owned = std::make_unique<std::vector<std::string>>(100, std::string(100, 'x'));
      if (owned->back().size() != 100) intact.store(false);
    });
  }
  for (std::thread& thread : threads) thread.join();
  return intact.load();
}

// Forks once more from the child: the child's allocator state after a fork
// must itself survive a fork.
bool RunGrandchild(uint64_t seed) {
  fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    ArmChildAlarm();
    _exit(ChurnBlocks(seed, 2000, 128 * 1024) ? 0 : 1);
  }
  return WaitForChild(pid, kChildDeadline).ExitedWithZero();
}

bool ReadStatsInChild() {
  size_t allocated = 0;
  if (RunMallctlCommand("thread.tcache.flush") != 0) return false;
  if (!RefreshStats()) return false;
  return ReadSizeValue("stats.allocated", &allocated) && allocated > 0;
}

// The body of a forked child. Returns its exit code.
int RunChild(int iteration, InheritedBlocks& inherited, uint64_t inherited_seed) {
  const uint64_t seed = static_cast<uint64_t>(iteration) * 7919 + 13;
  if (!inherited.CheckAndFree(inherited_seed)) {
    WriteToStderr("child: blocks allocated by the parent before fork were damaged");
    return kInheritedBlocksDamaged;
  }
  if (!ChurnBlocks(seed, 1000, 32 * 1024)) {
    WriteToStderr("child: small blocks failed the pattern check");
    return kSmallBlocksFailed;
  }
  if (!UseContainers(iteration)) {
    WriteToStderr("child: containers returned wrong contents");
    return kContainersFailed;
  }
  if (!UseLargeBlocks(seed)) {
    WriteToStderr("child: large blocks failed");
    return kLargeBlocksFailed;
  }
  if (iteration % 4 == 1 && !RunThreadsInChild(seed)) {
    WriteToStderr("child: threads started in the child failed");
    return kChildThreadsFailed;
  }
  if (iteration % 10 == 3 && !RunGrandchild(seed)) {
    WriteToStderr("child: a grandchild forked from the child failed");
    return kGrandchildFailed;
  }
  if (!ReadStatsInChild()) {
    WriteToStderr("child: mallctl failed");
    return kStatsFailed;
  }
  return kChildOk;
}

// Forks `count` children from the calling thread, one at a time. Each child
// runs `child_body` and ends with _exit or exit, alternately, and must exit
// with 0.
void ForkChildrenRepeatedly(int count, int (*child_body)(int, InheritedBlocks&, uint64_t)) {
  for (int iteration = 0; iteration < count; ++iteration) {
    InheritedBlocks inherited;
    const uint64_t inherited_seed = static_cast<uint64_t>(iteration) + 1000;
    inherited.Allocate(inherited_seed);
    // Unflushed stdio output would be written twice, once by the child.
    fflush(nullptr);

    pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed at iteration " << iteration << ": " << strerror(errno);
    if (pid == 0) {
      ArmChildAlarm();
      const int code = child_body(iteration, inherited, inherited_seed);
      // exit() also runs the atexit handlers and destructors of the
      // allocator and of this program in the child.
      if (iteration % 2 == 0) _exit(code);
      exit(code);
    }

    const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
    ASSERT_TRUE(outcome.ExitedWithZero())
        << "child of fork " << iteration << " " << outcome.Describe();
    ASSERT_TRUE(inherited.CheckAndFree(inherited_seed))
        << "parent's blocks changed during fork " << iteration;
  }
}

class ForkTest : public ProcessTest {};

TEST_F(ForkTest, ChildrenAllocateWhileParentThreadsAllocate) {
  AllocationWorkers workers(8);
  ForkChildrenRepeatedly(200, RunChild);
  workers.Stop();
  EXPECT_EQ(workers.corrupted_blocks(), 0u) << "blocks of the parent's threads were damaged";
  EXPECT_EQ(workers.failed_allocations(), 0u);
  EXPECT_GT(workers.operations(), 0u);
}

TEST_F(ForkTest, ForkThenExecTrue) {
  AllocationWorkers workers(8);
  for (int iteration = 0; iteration < 100; ++iteration) {
    fflush(nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed: " << strerror(errno);
    if (pid == 0) {
      char* arguments[] = {const_cast<char*>("/bin/true"), nullptr};
      execve("/bin/true", arguments, environ);
      _exit(127);
    }
    const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
    ASSERT_TRUE(outcome.ExitedWithZero()) << "fork+exec of /bin/true " << iteration << " "
                                          << outcome.Describe();
  }
  workers.Stop();
  EXPECT_EQ(workers.corrupted_blocks(), 0u);
}

TEST_F(ForkTest, PosixSpawnTrue) {
  AllocationWorkers workers(8);
  for (int iteration = 0; iteration < 100; ++iteration) {
    char* arguments[] = {const_cast<char*>("/bin/true"), nullptr};
    pid_t pid = -1;
    const int error = posix_spawn(&pid, "/bin/true", nullptr, nullptr, arguments, environ);
    ASSERT_EQ(error, 0) << "posix_spawn failed: " << strerror(error);
    const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
    ASSERT_TRUE(outcome.ExitedWithZero()) << "posix_spawn of /bin/true " << iteration << " "
                                          << outcome.Describe();
  }
  workers.Stop();
  EXPECT_EQ(workers.corrupted_blocks(), 0u);
}

TEST_F(ForkTest, VforkThenExecTrue) {
  AllocationWorkers workers(8);
  // vfork's child shares the parent's memory until execve, so the arguments
  // are prepared before it.
  char* arguments[] = {const_cast<char*>("/bin/true"), nullptr};
  for (int iteration = 0; iteration < 100; ++iteration) {
    pid_t pid = vfork();
    ASSERT_GE(pid, 0) << "vfork failed: " << strerror(errno);
    if (pid == 0) {
      execve("/bin/true", arguments, environ);
      _exit(127);
    }
    const ChildOutcome outcome = WaitForChild(pid, kChildDeadline);
    ASSERT_TRUE(outcome.ExitedWithZero()) << "vfork+exec of /bin/true " << iteration << " "
                                          << outcome.Describe();
  }
  workers.Stop();
  EXPECT_EQ(workers.corrupted_blocks(), 0u);
}

// Exec of the helper, which checks that memward is again the allocator in
// the new image and allocates from several threads.
TEST_F(ForkTest, SpawnedHelperRunsOnMemward) {
  AllocationWorkers workers(4);
  for (int iteration = 0; iteration < 20; ++iteration) {
    const HelperRun run = RunHelper({"check"});
    ASSERT_TRUE(run.outcome.ExitedWithZero())
        << HelperPath() << " check " << run.outcome.Describe() << "; its stderr:\n"
        << run.standard_error;
  }
  workers.Stop();
  EXPECT_EQ(workers.corrupted_blocks(), 0u);
}

// With MEMWARD_CONF=background_thread=true, jemalloc's background threads
// purge unused pages. A forked child, such as each worker of a pre-forking
// server, should keep that setting.
TEST_F(ForkTest, ChildKeepsBackgroundThreadSetting) {
  const HelperRun run =
      RunHelper({"background-thread-after-fork"}, {"MEMWARD_CONF=background_thread=true"});
  EXPECT_TRUE(run.outcome.ExitedWithZero())
      << "process_helper background-thread-after-fork " << run.outcome.Describe()
      << " (status 5: off in the parent, 6: off in the forked child); its stderr:\n"
      << run.standard_error;
}

// Threads that keep calling the allocator's maintenance entry points. In
// jemalloc 5.3 these hold locks that allocation takes only briefly or not
// at all: purging (memward's malloc_trim purges too) takes every arena's
// decay and extent locks, and a statistics refresh takes every bin lock.
class MaintenanceThreads {
 public:
  MaintenanceThreads() {
    null_device_ = open("/dev/null", O_WRONLY | O_CLOEXEC);
    threads_.emplace_back([this] { Loop([] { return malloc_trim(0) >= 0; }); });
    threads_.emplace_back([this] {
      Loop([] { return RunMallctlCommand(kPurgeAllArenas) == 0 && RefreshStats(); });
    });
    threads_.emplace_back([this] {
      Loop([this] {
        MallocStatsPrint()(WriteToNullDevice, &null_device_, nullptr);
        return true;
      });
    });
    while (started_.load() < static_cast<int>(threads_.size())) std::this_thread::yield();
  }
  ~MaintenanceThreads() {
    Stop();
    if (null_device_ >= 0) close(null_device_);
  }

  void Stop() {
    stop_.store(true);
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  uint64_t failures() const { return failures_.load(); }
  uint64_t calls() const { return calls_.load(); }

  static void WriteToNullDevice(void* file, const char* text) {
    (void)!write(*static_cast<int*>(file), text, strlen(text));
  }

 private:
  // Runs `call` until stopped, sleeping 200 us between calls. The calls
  // hold allocator locks for up to milliseconds, and a fork waits for those
  // locks. Threads that called without pause would make each fork wait for
  // all three in turn.
  template <typename Call>
  void Loop(Call call) {
    started_.fetch_add(1);
    while (!stop_.load(std::memory_order_relaxed)) {
      if (!call()) failures_.fetch_add(1);
      calls_.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  int null_device_ = -1;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<int> started_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> calls_{0};
};

// The child of a fork taken during maintenance repeats the same
// maintenance calls itself, so every lock they take must be usable.
int RunMaintenanceChild(int iteration, InheritedBlocks& inherited, uint64_t inherited_seed) {
  if (!inherited.CheckAndFree(inherited_seed)) {
    WriteToStderr("child: blocks allocated by the parent before fork were damaged");
    return kInheritedBlocksDamaged;
  }
  if (!ChurnBlocks(static_cast<uint64_t>(iteration) + 77, 1000, 64 * 1024)) {
    WriteToStderr("child: small blocks failed the pattern check");
    return kSmallBlocksFailed;
  }
  int null_device = open("/dev/null", O_WRONLY | O_CLOEXEC);
  const bool trimmed = malloc_trim(0) >= 0;
  const bool purged = RunMallctlCommand(kPurgeAllArenas) == 0;
  MallocStatsPrint()(MaintenanceThreads::WriteToNullDevice, &null_device, nullptr);
  close(null_device);
  if (!trimmed || !purged) {
    WriteToStderr("child: malloc_trim or arena purge failed");
    return kMaintenanceFailed;
  }
  if (!UseLargeBlocks(static_cast<uint64_t>(iteration))) {
    WriteToStderr("child: large blocks failed");
    return kLargeBlocksFailed;
  }
  if (!ReadStatsInChild()) {
    WriteToStderr("child: mallctl failed");
    return kStatsFailed;
  }
  return kChildOk;
}

TEST_F(ForkTest, ForkDuringTrimPurgeAndStatsPrint) {
  ASSERT_NE(Mallctl(), nullptr) << "mallctl is not exported";
  ASSERT_NE(MallocStatsPrint(), nullptr) << "malloc_stats_print is not exported";
  for (const char* name : {"malloc_trim", "mallctl", "malloc_stats_print"}) {
    EXPECT_NE(LibraryDefining(name).find("libmemward"), std::string::npos)
        << name << " resolves to '" << LibraryDefining(name) << "', not to libmemward";
  }

  AllocationWorkers workers(2);
  MaintenanceThreads maintenance;
  ForkChildrenRepeatedly(100, RunMaintenanceChild);
  maintenance.Stop();
  workers.Stop();
  EXPECT_EQ(maintenance.failures(), 0u) << "malloc_trim or mallctl failed in the parent";
  EXPECT_GT(maintenance.calls(), 0u);
  EXPECT_EQ(workers.corrupted_blocks(), 0u);
}

}  // namespace
}  // namespace memward_test
