// How memward configures the embedded jemalloc by default: the number of
// automatic arenas and the bound on the dirty pages that freed large blocks
// leave. Each test reads jemalloc's own options and statistics, so a
// configuration that stops taking effect fails here even if the workloads in
// bench/ only get slower.
//
// The tests assume MEMWARD_CONF is unset, as CTest runs them.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "process_test_support.h"

namespace memward_test {
namespace {

constexpr size_t kMiB = 1024 * 1024;

// The default of the dirty_max_bytes setting.
constexpr size_t kDirtyMaxBytes = 32 * kMiB;

class EngineDefaultsTest : public ProcessTest {};

// Returns the bytes in dirty and muzzy pages over all arenas, as of now.
size_t ReadUnusedBytes() {
  EXPECT_TRUE(RefreshStats());
  size_t dirty_pages = 0;
  size_t muzzy_pages = 0;
  EXPECT_TRUE(ReadSizeValue("stats.arenas.4096.pdirty", &dirty_pages));
  EXPECT_TRUE(ReadSizeValue("stats.arenas.4096.pmuzzy", &muzzy_pages));
  return (dirty_pages + muzzy_pages) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Returns the number of sweeps in which jemalloc purged dirty pages, over
// all arenas.
uint64_t ReadDirtyPurgeCount() {
  EXPECT_TRUE(RefreshStats());
  uint64_t count = 0;
  size_t length = sizeof(count);
  EXPECT_EQ(Mallctl()("stats.arenas.4096.dirty_npurge", &count, &length, nullptr, 0), 0);
  return count;
}

TEST_F(EngineDefaultsTest, ArenaCountFollowsCpus) {
  cpu_set_t cpus;
  ASSERT_EQ(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
  const unsigned expected = static_cast<unsigned>(CPU_COUNT(&cpus));

  unsigned narenas = 0;
  size_t length = sizeof(narenas);
  ASSERT_EQ(Mallctl()("opt.narenas", &narenas, &length, nullptr, 0), 0);
  EXPECT_EQ(narenas, expected) << "one automatic arena per CPU, " << CPU_COUNT(&cpus)
                               << " CPUs";
}

// The pattern of bench/workloads/large_blocks.cc: blocks of 5 to 25 MiB, two
// alive at a time, every page written. Without the bound, the freed blocks
// stayed dirty and dirty pages reached about 100 MiB.
TEST_F(EngineDefaultsTest, LargeBlockLoopKeepsDirtyBounded) {
  constexpr int kIterations = 60;
  constexpr size_t kMaxBlock = 25 * kMiB;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  Random random(7);
  void* live[2] = {nullptr, nullptr};
  size_t max_unused = 0;
  const uint64_t purges_before = ReadDirtyPurgeCount();

  for (int i = 0; i < kIterations; ++i) {
    const int slot = i % 2;
    free(live[slot]);
    const size_t size = random.Between(5 * kMiB, kMaxBlock);
    auto* block = static_cast<unsigned char*>(malloc(size));
    ASSERT_NE(block, nullptr) << "malloc(" << size << ")";
    // Read before the block is written: the bound must hold by the time the
    // program touches the new block.
    max_unused = std::max(max_unused, ReadUnusedBytes());
    for (size_t offset = 0; offset < size; offset += page) block[offset] = 1;
    live[slot] = block;
  }
  for (void* block : live) free(block);

  // A check runs after each quarter of the bound allocated in large blocks,
  // which in this loop is every allocation. Between two checks one free adds
  // at most one block.
  EXPECT_LE(max_unused, kDirtyMaxBytes + kMaxBlock)
      << "max dirty and muzzy bytes seen after an allocation";
  EXPECT_GT(ReadDirtyPurgeCount(), purges_before) << "the bound never purged";
}

}  // namespace
}  // namespace memward_test
