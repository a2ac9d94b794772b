// Shared-arena blocks under scope changes and header damage: frees after
// nested scopes evicted the owner's slot cache, frees on other threads and
// in other tenants' scopes, and headers copied from another block.
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "tests/unit/tenant_test_util.h"

extern "C" void free_sized(void* pointer, size_t size);

namespace memward::testing {
namespace {

constexpr size_t kSmall = 48;  // 64 bytes with the owner header

memward_tenant_id RegisterShared(const std::string& base) {
  memward_tenant_id id = Register(UniqueName(base));
  EXPECT_NE(id, 0u);
  EXPECT_EQ(Stats(id).dedicated_arena, 0);
  return id;
}

std::vector<void*> AllocateIn(memward_tenant_id id, size_t size, int count) {
  std::vector<void*> blocks;
  blocks.reserve(count);
  memward_scope saved;
  EXPECT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  for (int i = 0; i < count; i++) blocks.push_back(Allocate(size));
  EXPECT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  return blocks;
}

// Enters the scopes of `inner`, each nested in the one before, and in each
// frees the last block of `blocks` (with free_sized too when `sized`, which
// frees a second one) and enters memward's own scope through a call that
// does. Then exits them all. `saved` has a place for each scope, allocated
// by the caller outside the scope that the blocks belong to. Returns false
// when a scope entry or exit fails. It adds no gtest assertion, because
// gtest allocates its per-thread reporter on first use, which would charge
// the scope the caller is in.
bool FreeInNestedScopes(const std::vector<memward_tenant_id>& inner, bool sized,
                        std::vector<void*>* blocks, std::vector<memward_scope>* saved) {
  for (size_t i = 0; i < inner.size(); i++) {
    if (memward_scope_enter(inner[i], &(*saved)[i]) != MEMWARD_OK) return false;
    free(blocks->back());
    blocks->pop_back();
    if (sized) {
      free_sized(blocks->back(), kSmall);
      blocks->pop_back();
    }
    size_t length = 0;
    memward_metrics_text(nullptr, 0, &length);
  }
  for (size_t i = inner.size(); i-- > 0;) {
    if (memward_scope_exit(&(*saved)[i]) != MEMWARD_OK) return false;
  }
  return true;
}

// Frees two blocks of the shared tenant in each of five nested scopes of
// dedicated tenants (more than the four slot caches a thread keeps, so the
// owner's cache is evicted), then the rest in the owner's scope again.
TEST(SharedScope, FreesAfterEvictionCreditOwner) {
  memward_tenant_id owner = RegisterShared("evicted-owner");
  std::vector<memward_tenant_id> inner;
  for (int i = 0; i < 5; i++) inner.push_back(Register(UniqueName("evicting"), true));
  // Both vectors are allocated before the scope, so the owner is charged
  // for the blocks alone.
  std::vector<void*> blocks;
  blocks.reserve(40);
  std::vector<memward_scope> saved(inner.size());
  memward_scope outer;
  ASSERT_EQ(memward_scope_enter(owner, &outer), MEMWARD_OK);
  for (int i = 0; i < 40; i++) blocks.push_back(Allocate(kSmall));
  const bool nested_ok = FreeInNestedScopes(inner, /*sized=*/true, &blocks, &saved);
  for (void* block : blocks) free(block);
  ASSERT_EQ(memward_scope_exit(&outer), MEMWARD_OK);
  memward_thread_flush();

  ASSERT_TRUE(nested_ok) << "a nested scope entry or exit failed";
  EXPECT_EQ(Stats(owner).live_bytes, 0);
  for (memward_tenant_id id : inner) EXPECT_EQ(Stats(id).live_bytes, 0) << "tenant " << id;
}

// A request's blocks freed in nested scopes of a shared tenant and four
// dedicated tenants (five slots with the request's, so the request's cache
// is evicted), with memward's own scope in between. The request's summary
// and every tenant's live bytes count only the blocks left.
TEST(SharedScope, RequestBlocksFreedInNestedScopes) {
  memward_tenant_id requester = RegisterShared("nested-requester");
  std::vector<memward_tenant_id> inner = {RegisterShared("nested-shared")};
  for (int i = 0; i < 4; i++) inner.push_back(Register(UniqueName("nested-dedicated"), true));
  std::vector<void*> blocks;
  blocks.reserve(20);
  std::vector<memward_scope> saved(inner.size());

  memward_request request;
  ASSERT_EQ(memward_request_begin(requester, &request), MEMWARD_OK);
  for (int i = 0; i < 20; i++) blocks.push_back(Allocate(kSmall));
  ASSERT_TRUE(FreeInNestedScopes(inner, /*sized=*/false, &blocks, &saved));
  free(blocks.back());
  blocks.pop_back();
  int64_t left = 0;
  for (void* block : blocks) left += static_cast<int64_t>(malloc_usable_size(block));
  memward_request_summary summary;
  ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);
  memward_thread_flush();

  EXPECT_EQ(summary.escaped_bytes, static_cast<uint64_t>(left));
  EXPECT_EQ(Stats(requester).live_bytes, left);
  for (memward_tenant_id id : inner) EXPECT_EQ(Stats(id).live_bytes, 0) << "tenant " << id;
  for (void* block : blocks) free(block);
  memward_thread_flush();
  EXPECT_EQ(Stats(requester).live_bytes, 0);
}

// Blocks of one shared tenant freed on another thread in another shared
// tenant's scope, by free and by free_sized, and from the process scope.
TEST(SharedScope, CrossThreadFreesCreditOwner) {
  memward_tenant_id owner = RegisterShared("cross-owner");
  memward_tenant_id other = RegisterShared("cross-other");
  std::vector<void*> blocks = AllocateIn(owner, kSmall, 30);
  const int64_t charged = Stats(owner).live_bytes;
  EXPECT_GT(charged, 0);
  std::thread worker([&] {
    memward_scope saved;
    ASSERT_EQ(memward_scope_enter(other, &saved), MEMWARD_OK);
    void* own = Allocate(kSmall);
    for (int i = 0; i < 10; i++) free(blocks[i]);
    for (int i = 10; i < 20; i++) free_sized(blocks[i], kSmall);
    free(own);
    ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
    for (int i = 20; i < 30; i++) free(blocks[i]);
    memward_thread_flush();
  });
  worker.join();
  memward_thread_flush();

  EXPECT_EQ(Stats(owner).live_bytes, 0);
  EXPECT_EQ(Stats(other).live_bytes, 0);
}

// A header copied from another block of the same tenant carries the other
// block's address in its check word, so the free is reported as corruption.
TEST(SharedScopeDeathTest, CopiedHeaderIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  memward_tenant_id owner = RegisterShared("copied-header");
  std::vector<void*> blocks = AllocateIn(owner, kSmall, 2);
  memcpy(static_cast<char*>(blocks[1]) - 16, static_cast<char*>(blocks[0]) - 16, 16);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(owner, &saved), MEMWARD_OK);
  EXPECT_DEATH(free(blocks[1]), "corrupt owner header");
  ASSERT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  EXPECT_DEATH(free(blocks[1]), "corrupt owner header");
  free(blocks[0]);
}

}  // namespace
}  // namespace memward::testing
