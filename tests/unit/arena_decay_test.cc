// Dirty page decay of the arenas memward creates (scope_dirty_decay, 0 by
// default) against the automatic arenas and the sampler's (dirty_decay, 1 s
// by default), and
// memward_purge emptying the calling thread's caches. A process of its own,
// so that its tenant gets a dedicated arena before other tests use up the
// budget, and so that no MEMWARD_CONF changes the defaults.
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "tests/unit/tenant_test_util.h"

namespace memward::testing {
namespace {

constexpr size_t kLargeBlock = size_t{4} << 20;

unsigned ArenaOf(void* pointer) {
  unsigned arena = 0;
  size_t length = sizeof(arena);
  EXPECT_EQ(mallctl("arenas.lookup", &arena, &length, &pointer, sizeof(pointer)), 0);
  return arena;
}

ssize_t DirtyDecayOf(unsigned arena) {
  ssize_t decay = -2;
  size_t length = sizeof(decay);
  std::string name = "arena." + std::to_string(arena) + ".dirty_decay_ms";
  EXPECT_EQ(mallctl(name.c_str(), &decay, &length, nullptr, 0), 0) << name;
  return decay;
}

size_t DirtyPagesOf(unsigned arena) {
  RefreshStats();
  return ReadSize("stats.arenas." + std::to_string(arena) + ".pdirty");
}

unsigned AutomaticArenas() { return ReadUnsigned("opt.narenas"); }

// Sampling is off in these tests, because the sampler serves a sampled block
// from its own arena and a 4 MiB block is sampled almost always.
class ArenaDecay : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(memward_sample_interval_set(0), MEMWARD_OK); }
};

// Writes every page of a large block, frees it and returns its arena.
unsigned FillAndFreeLargeBlock() {
  void* block = Allocate(kLargeBlock);
  EXPECT_NE(block, nullptr);
  memset(block, 1, kLargeBlock);
  unsigned arena = ArenaOf(block);
  free(block);
  return arena;
}

TEST_F(ArenaDecay, TenantArenaPurgesAtFree) {
  memward_tenant_id id = Register(UniqueName("decay"));
  ASSERT_NE(id, 0u);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  unsigned arena = FillAndFreeLargeBlock();
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);

  EXPECT_GE(arena, AutomaticArenas()) << "the block came from an automatic arena";
  EXPECT_EQ(DirtyDecayOf(arena), 0);
  EXPECT_EQ(DirtyPagesOf(arena), 0u);
}

TEST_F(ArenaDecay, RequestArenaPurgesAtFree) {
  memward_tenant_id id = Register(UniqueName("request-decay"));
  ASSERT_NE(id, 0u);
  memward_request request;
  ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
  ASSERT_NE(request.slot, 0u) << "no request arena was free";
  unsigned arena = FillAndFreeLargeBlock();
  // Read while the request is open, because its end purges the arena anyway.
  const ssize_t decay = DirtyDecayOf(arena);
  const size_t dirty = DirtyPagesOf(arena);
  ASSERT_EQ(memward_request_end(&request, nullptr), MEMWARD_OK);

  EXPECT_GE(arena, AutomaticArenas());
  EXPECT_EQ(decay, 0);
  EXPECT_EQ(dirty, 0u);
}

// The dirty_decay setting's default, in milliseconds.
constexpr ssize_t kDefaultDirtyDecayMs = 1000;

TEST_F(ArenaDecay, AutomaticArenaKeepsDirtyDecay) {
  unsigned arena = FillAndFreeLargeBlock();
  EXPECT_LT(arena, AutomaticArenas());
  EXPECT_EQ(DirtyDecayOf(arena), kDefaultDirtyDecayMs);
  // With a 1 s decay, jemalloc purges freed pages gradually over that time,
  // so most of them are still dirty right after the free.
  EXPECT_GT(DirtyPagesOf(arena), 0u);
}

// A sampled block is an ordinary allocation that happened to be sampled,
// so the sampler's arena keeps the automatic arenas' decay.
TEST_F(ArenaDecay, SamplerArenaKeepsDirtyDecay) {
  ASSERT_EQ(memward_sample_interval_set(1), MEMWARD_OK);
  void* block = Allocate(kLargeBlock);
  ASSERT_NE(block, nullptr);
  unsigned arena = ArenaOf(block);
  free(block);
  ASSERT_EQ(memward_sample_interval_set(0), MEMWARD_OK);

  EXPECT_GE(arena, AutomaticArenas()) << "the block was not sampled";
  EXPECT_EQ(DirtyDecayOf(arena), kDefaultDirtyDecayMs);
}

TEST_F(ArenaDecay, PurgeEmptiesThisThreadsCaches) {
  memward_tenant_id id = Register(UniqueName("purge-caches"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  std::vector<void*> blocks;
  blocks.reserve(64);  // The vector's buffer must not be the tenant's.
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  for (int i = 0; i < 64; i++) blocks.push_back(Allocate(64));
  unsigned arena = ArenaOf(blocks[0]);
  for (void* block : blocks) free(block);
  RefreshStats();
  // The freed blocks wait in this thread's caches, which jemalloc counts as
  // allocated.
  const size_t cached = ArenaAllocated(arena);
  ASSERT_EQ(memward_purge(), MEMWARD_OK);
  RefreshStats();
  const size_t after_purge = ArenaAllocated(arena);
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);

  EXPECT_GE(arena, AutomaticArenas()) << "the tenant got no dedicated arena";
  EXPECT_GE(cached, 64u * 64u);
  EXPECT_EQ(after_purge, 0u);
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

}  // namespace
}  // namespace memward::testing
