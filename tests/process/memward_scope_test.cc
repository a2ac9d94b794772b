// memward's own tenant scope on threads that end inside it: the warden's
// thread, which stays in the scope until it stops, and any thread that
// enters the scope through alloc::EnterScope and exits without leaving it.
// The scope has no slot cache, so such a thread may never get a thread block
// or the pthread key whose destructor publishes its batch.
#include <malloc.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "accounting/tenant.h"
#include "accounting/warden.h"
#include "alloc/arena_registry.h"
#include "alloc/scope.h"
#include "memward/memward.h"

namespace memward {
namespace {

using accounting::kMemwardTenant;
using accounting::Warden;

// Fewer bytes and operations than one batch contains (1 MiB, 4,096
// operations), so a batched count is not published before the thread ends.
constexpr int kBlocks = 100;
constexpr size_t kBlockSize = 5000;

// Other threads of memward (the warden, the admin server) allocate as
// memward too; their batches stay under this many bytes in these tests.
constexpr int64_t kNoise = 64 * 1024;

int64_t MemwardLiveBytes() {
  memward_thread_flush();
  memward_tenant_stats stats{};
  EXPECT_EQ(memward_tenant_stats_get(kMemwardTenant, &stats), MEMWARD_OK);
  return stats.live_bytes;
}

// Allocates kBlocks blocks into `blocks` and returns their usable bytes.
int64_t AllocateBlocks(void** blocks) {
  int64_t bytes = 0;
  for (int i = 0; i < kBlocks; i++) {
    blocks[i] = malloc(kBlockSize);
    bytes += static_cast<int64_t>(malloc_usable_size(blocks[i]));
  }
  return bytes;
}

void FreeBlocks(void** blocks) {
  for (int i = 0; i < kBlocks; i++) free(blocks[i]);
}

TEST(MemwardScope, ThreadExitInsideScopeKeepsCounts) {
  const uint32_t slot = alloc::MemwardArenaSlot();
  ASSERT_NE(slot, 0u);
  const int64_t before = MemwardLiveBytes();
  void* blocks[kBlocks];
  int64_t allocated = 0;
  std::thread worker([&] {
    // Left without ExitScope: the thread ends inside memward's scope.
    alloc::EnterScope(kMemwardTenant, slot, 0);
    allocated = AllocateBlocks(blocks);
  });
  worker.join();

  const int64_t after_exit = MemwardLiveBytes();
  EXPECT_GE(after_exit - before, allocated - kNoise)
      << "the exited thread's allocations are missing from memward's live bytes";

  // Freed from the process scope: credited to memward at once.
  FreeBlocks(blocks);
  const int64_t after_free = MemwardLiveBytes();
  EXPECT_GE(after_free - before, -kNoise) << "memward's live bytes went below the start";
}

// A thread that waits inside memward's scope while another thread forks:
// only the forking thread lives on in the child, so the waiting thread's
// counts must have reached the shared counters before the fork.
TEST(MemwardScope, ForkKeepsOtherThreadsCounts) {
  const uint32_t slot = alloc::MemwardArenaSlot();
  ASSERT_NE(slot, 0u);
  const int64_t before = MemwardLiveBytes();
  void* blocks[kBlocks];
  std::atomic<int64_t> allocated{0};
  std::atomic<bool> release{false};
  std::thread worker([&] {
    alloc::SavedScope saved = alloc::EnterScope(kMemwardTenant, slot, 0);
    allocated = AllocateBlocks(blocks);
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    alloc::ExitScope(saved);
  });
  while (allocated.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  const pid_t child = fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    const int64_t in_child = MemwardLiveBytes();
    _exit(in_child - before >= allocated.load() - kNoise ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  release = true;
  worker.join();
  FreeBlocks(blocks);

  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "the child's memward live bytes lack the other thread's allocations";
}

struct TaskBlocks {
  void* blocks[kBlocks] = {};
  std::atomic<int64_t> allocated{0};
  std::atomic<bool> done{false};
};

void AllocateOnWarden(void* context) {
  auto* task = static_cast<TaskBlocks*>(context);
  if (task->done.load()) return;
  task->allocated = AllocateBlocks(task->blocks);
  task->done = true;
}

TEST(MemwardScope, WardenStopKeepsCounts) {
  static TaskBlocks task;
  int task_id = -1;
  Warden& warden = Warden::Get();
  ASSERT_TRUE(warden.Start());
  const int64_t before = MemwardLiveBytes();
  ASSERT_TRUE(warden.AddPeriodic("allocate-once", 3600 * 1000, AllocateOnWarden, &task, &task_id));
  warden.WakeTask(task_id);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!task.done.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(task.done.load()) << "the warden did not run the task within 10 s";

  // The warden's thread ends inside memward's scope.
  warden.Stop();
  const int64_t after_stop = MemwardLiveBytes();
  EXPECT_GE(after_stop - before, task.allocated.load() - kNoise)
      << "the warden's allocations are missing from memward's live bytes after Stop";

  FreeBlocks(task.blocks);
  const int64_t after_free = MemwardLiveBytes();
  EXPECT_GE(after_free - before, -kNoise) << "memward's live bytes went below the start";
  EXPECT_TRUE(warden.Start());
}

}  // namespace
}  // namespace memward
