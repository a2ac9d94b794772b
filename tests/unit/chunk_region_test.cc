// The chunk region: tenant arenas' chunks come from one reserved range that
// untagged memory never falls in, and with the reservation refused (a low
// RLIMIT_AS) memward still routes and charges every allocation.
//
// CTest runs this binary twice: as is, and under `ulimit -v` with
// MEMWARD_TEST_REGION=absent, where every reservation size fails.
#include <malloc.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "alloc/shared_header.h"
#include "gtest/gtest.h"
#include "memward/memward.h"
#include "tests/unit/tenant_test_util.h"

namespace memward::testing {
namespace {

// The region sizes memward tries, largest first (alloc/chunk_region.h).
constexpr uintptr_t kRegionSizes[] = {uintptr_t{64} << 30, uintptr_t{16} << 30,
                                      uintptr_t{4} << 30};

struct Mapping {
  uintptr_t start = 0;
  uintptr_t end = 0;
  std::string permissions;
};

std::vector<Mapping> ReadMappings() {
  std::vector<Mapping> mappings;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    Mapping mapping;
    unsigned long long start = 0;
    unsigned long long end = 0;
    char permissions[8] = {};
    if (sscanf(line.c_str(), "%llx-%llx %7s", &start, &end, permissions) != 3) continue;
    mapping.start = start;
    mapping.end = end;
    mapping.permissions = permissions;
    mappings.push_back(mapping);
  }
  return mappings;
}

// Returns the [start, end) of the region: the reserved PROT_NONE part that
// ends it and the committed chunks below it, one of kRegionSizes in all.
// {0, 0} when no reservation of at least 1 GiB is mapped.
std::pair<uintptr_t, uintptr_t> FindRegion() {
  for (const Mapping& mapping : ReadMappings()) {
    const uintptr_t size = mapping.end - mapping.start;
    if (mapping.permissions != "---p" || size < (uintptr_t{1} << 30)) continue;
    uintptr_t region = 0;
    for (uintptr_t candidate : kRegionSizes) {
      if (candidate >= size) region = candidate;
    }
    if (region != 0) return {mapping.end - region, mapping.end};
  }
  return {0, 0};
}

bool RegionExpected() {
  const char* expectation = getenv("MEMWARD_TEST_REGION");
  return expectation == nullptr || strcmp(expectation, "absent") != 0;
}

// Returns the value of the memward_owned_range_open gauge, or -1.
int OwnedRangeOpenGauge() {
  std::vector<char> text(1 << 20);
  size_t length = 0;
  if (memward_metrics_text(text.data(), text.size(), &length) != MEMWARD_OK) return -1;
  const std::string metrics(text.data(), length);
  const std::string name = "\nmemward_owned_range_open ";
  const size_t at = metrics.find(name);
  if (at == std::string::npos) return -1;
  return atoi(metrics.c_str() + at + name.size());
}

// Returns this process's VmData in bytes, or 0.
size_t DataBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmData:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  }
  return 0;
}

bool Inside(const void* block, std::pair<uintptr_t, uintptr_t> range) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(block);
  return address >= range.first && address < range.second;
}

TEST(ChunkRegion, HoldsTenantChunksOnly) {
  memward_tenant_id id = Register(UniqueName("region"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  void* small = Allocate(100);
  void* large = Allocate(3 << 20);
  memward_scope_exit(&saved);
  void* untagged = Allocate(100);

  const auto region = FindRegion();
  if (RegionExpected()) {
    ASSERT_NE(region.second, 0u) << "no reservation in /proc/self/maps";
    EXPECT_TRUE(Inside(small, region)) << small;
    EXPECT_TRUE(Inside(large, region)) << large;
    EXPECT_FALSE(Inside(untagged, region)) << untagged;
  } else {
    EXPECT_EQ(region.second, 0u) << "a reservation was mapped despite the address-space limit";
  }
  // Chunks mapped outside the region open the owned range to every pointer.
  EXPECT_EQ(OwnedRangeOpenGauge(), RegionExpected() ? 0 : 1);
  free(small);
  free(large);
  free(untagged);
}

// Under a data limit (RLIMIT_DATA) the kernel fails to commit region chunks.
// The allocations that need them fail, but the owned range stays closed, so
// later frees keep their one-compare path.
TEST(ChunkRegion, FailedCommitKeepsRangeClosed) {
  if (!RegionExpected()) GTEST_SKIP() << "no region under the address-space limit";
  memward_tenant_id id = Register(UniqueName("commit-limit"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  rlimit saved_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_DATA, &saved_limit), 0);
  const size_t data = DataBytes();
  ASSERT_GT(data, 0u);
  rlimit low = saved_limit;
  low.rlim_cur = data + (8 << 20);
  ASSERT_EQ(setrlimit(RLIMIT_DATA, &low), 0);

  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  std::vector<void*> blocks;
  int failed_allocations = 0;
  for (int i = 0; i < 64; i++) {
    void* block = Allocate(1 << 20);
    if (block == nullptr) failed_allocations++;
    if (block != nullptr) blocks.push_back(block);
  }
  memward_scope_exit(&saved);
  ASSERT_EQ(setrlimit(RLIMIT_DATA, &saved_limit), 0);

  EXPECT_GT(failed_allocations, 0) << "64 MiB fit in an 8 MiB data limit";
  EXPECT_EQ(OwnedRangeOpenGauge(), 0);
  for (void* block : blocks) free(block);
}

// Returns whether valgrind runs this process. valgrind maps the program's
// memory at low addresses, below the region.
bool UnderValgrind() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("vgpreload") != std::string::npos) return true;
  }
  return false;
}

// The region is reserved at its address hint, 8 TiB, below the untagged
// memory that mmap places, so that free separates untagged memory with one
// compare. Sampling is off during the test, because a sampled block comes
// from the sampler's arena, inside the region.
TEST(ChunkRegion, LiesBelowUntaggedMemory) {
  if (!RegionExpected()) GTEST_SKIP() << "no region under the address-space limit";
  if (UnderValgrind()) GTEST_SKIP() << "valgrind maps untagged memory below the region";
  memward_sampler_stats sampler{};
  ASSERT_EQ(memward_sampler_stats_get(&sampler), MEMWARD_OK);
  ASSERT_EQ(memward_sample_interval_set(0), MEMWARD_OK);
  memward_tenant_id id = Register(UniqueName("below"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  void* tagged = Allocate(100);
  memward_scope_exit(&saved);
  std::vector<void*> untagged;
  for (size_t size : {size_t{16}, size_t{4096}, size_t{1} << 20, size_t{64} << 20}) {
    untagged.push_back(Allocate(size));
  }

  const auto region = FindRegion();
  ASSERT_NE(region.second, 0u) << "no reservation in /proc/self/maps";
  EXPECT_EQ(region.first, uintptr_t{8} << 40) << std::hex << region.first;
  EXPECT_TRUE(Inside(tagged, region)) << tagged;
  for (void* block : untagged) {
    EXPECT_GE(reinterpret_cast<uintptr_t>(block), region.second) << block;
  }
  free(tagged);
  for (void* block : untagged) free(block);
  EXPECT_EQ(memward_sample_interval_set(sampler.interval_bytes), MEMWARD_OK);
}

// Routing and charging do not depend on the region: the same checks pass
// with and without it.
TEST(ChunkRegion, TenantIsChargedAndCredited) {
  memward_tenant_id id = Register(UniqueName("charged"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  void* small = Allocate(1000);
  void* large = Allocate(5 << 20);
  memward_scope_exit(&saved);
  memward_thread_flush();

  // A tenant registered after the dedicated arenas ran out (a repeated run)
  // shares an arena, whose blocks carry a charged owner header.
  memward_tenant_stats stats = Stats(id);
  const size_t header = stats.dedicated_arena ? 0 : alloc::kSharedHeaderSize;
  EXPECT_EQ(stats.live_bytes, static_cast<int64_t>(malloc_usable_size(small) +
                                                   malloc_usable_size(large) + 2 * header));
  free(small);
  free(large);
  memward_thread_flush();
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

}  // namespace
}  // namespace memward::testing
