// A caller that names one of memward's arenas in jemalloc's MALLOCX_ARENA
// flag, then frees the block inside that arena's scope.
//
// jemalloc 5.3's automatic thread cache ignores MALLOCX_ARENA on a hit and
// refills from the named arena on a miss. Were the flag honoured, one mallocx
// naming a memward arena would fill the thread cache with that arena's
// blocks, and later plain mallocs would hand them out untagged and uncounted.
// A free in the arena's scope would then file them under a stale page tag and
// credit bytes that were never charged. memward drops such a flag.
#include <malloc.h>
#include <stdlib.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "tests/unit/tenant_test_util.h"

extern "C" void* mallocx(size_t size, int flags);

namespace memward::testing {
namespace {

// jemalloc 5.3's MALLOCX_ARENA.
int ArenaFlag(unsigned arena) { return static_cast<int>((arena + 1) << 20); }

// Registers a tenant and checks that it got an arena of its own.
memward_tenant_id RegisterDedicated(const std::string& base) {
  memward_tenant_id id = Register(UniqueName(base), true);
  EXPECT_NE(id, 0u);
  EXPECT_EQ(Stats(id).dedicated_arena, 1) << "the dedicated arena pool is exhausted";
  return id;
}

unsigned ArenaOf(void* pointer) {
  unsigned arena = 0;
  size_t length = sizeof(arena);
  mallctl("arenas.lookup", &arena, &length, &pointer, sizeof(pointer));
  return arena;
}

// Tags the pages of `count` blocks of `size` bytes in the tenant's arena with
// their size class, frees the blocks and returns their slabs to the arena's
// retained pages. Returns the jemalloc index of the tenant's arena.
unsigned TagAndRetainPages(memward_tenant_id id, size_t size, size_t count) {
  std::vector<void*> blocks;
  blocks.reserve(count);
  memward_scope saved;
  EXPECT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  for (size_t i = 0; i < count; i++) blocks.push_back(Allocate(size));
  unsigned arena = ArenaOf(blocks[0]);
  for (void* block : blocks) free(block);
  memward_thread_flush();
  EXPECT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  memward_purge();  // the next slabs come from the retained pages
  return arena;
}

// Returns the blocks that plain malloc hands out of `arena` after one
// mallocx naming it refilled the thread cache's bin for `size`.
std::vector<void*> TakeThroughThreadCache(unsigned arena, size_t size) {
  std::vector<void*> blocks;
  blocks.reserve(256);
  mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
  blocks.push_back(mallocx(size, ArenaFlag(arena)));
  for (int i = 0; i < 200; i++) {
    void* block = Allocate(size);
    if (ArenaOf(block) == arena) {
      blocks.push_back(block);
    } else {
      free(block);
    }
  }
  return blocks;
}

// Had a 48-byte block of the arena started on a page tagged for 64-byte
// blocks, a free in the scope would file it under the 64-byte class, and the
// next malloc(64) in the scope would get 48 bytes.
TEST(ArenaFlag, FreeInScopeKeepsBlockClass) {
  memward_tenant_id id = RegisterDedicated("arena-flag-class");
  unsigned arena = TagAndRetainPages(id, 64, 4096);
  std::vector<void*> foreign = TakeThroughThreadCache(arena, 48);
  EXPECT_NE(ArenaOf(foreign[0]), arena) << "mallocx used memward's arena";
  EXPECT_EQ(foreign.size(), 1u) << "plain malloc handed out blocks of memward's arena";

  std::vector<void*> reused;
  reused.reserve(foreign.size());
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  for (void* block : foreign) free(block);
  size_t undersized = 0;
  for (size_t i = 0; i < foreign.size(); i++) {
    void* block = Allocate(64);
    if (malloc_usable_size(block) < 64) undersized++;
    reused.push_back(block);
  }
  for (void* block : reused) free(block);
  memward_thread_flush();
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  EXPECT_EQ(undersized, 0u) << "malloc(64) returned blocks of 48 usable bytes";
}

// A block taken with the arena's flag is not the arena's, so a free in the
// scope credits the tenant nothing it was not charged.
TEST(ArenaFlag, UncountedBlockFreedInScope) {
  memward_tenant_id id = RegisterDedicated("arena-flag-count");
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  void* probe = Allocate(64);
  unsigned arena = ArenaOf(probe);
  free(probe);
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);

  void* block = mallocx(4096, ArenaFlag(arena));
  EXPECT_NE(ArenaOf(block), arena);
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  free(block);
  memward_thread_flush();
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  memward_thread_flush();
  memward_tenant_stats stats = Stats(id);
  EXPECT_EQ(stats.live_bytes, 0);
  EXPECT_EQ(stats.allocated_bytes, stats.freed_bytes);
}

}  // namespace
}  // namespace memward::testing
