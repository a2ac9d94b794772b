// Requests: per-request arenas, summaries, escapes, draining and fork.
#include <malloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "memward/memward.hpp"
#include "tests/unit/tenant_test_util.h"

namespace memward::testing {
namespace {

unsigned ArenaOf(void* pointer) {
  unsigned arena = 0;
  size_t length = sizeof(arena);
  mallctl("arenas.lookup", &arena, &length, &pointer, sizeof(pointer));
  return arena;
}

TEST(Request, EscapedBytesAreTheCachedObject) {
  memward_tenant_id id = Register(UniqueName("escape"));
  std::vector<void*> scratch;
  scratch.reserve(500);  // The vector's own buffer must not be charged to the request.
  memward_request request;
  ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
  ASSERT_NE(request.slot, 0u);
  for (int i = 0; i < 500; i++) scratch.push_back(Allocate(64 + i));
  void* cached = Allocate(3000);
  for (void* block : scratch) free(block);
  memward_request_summary summary;
  ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);
  EXPECT_EQ(summary.had_arena, 1);
  EXPECT_EQ(summary.escaped_bytes, malloc_usable_size(cached));
  EXPECT_EQ(summary.allocations, 501u);
  EXPECT_EQ(summary.frees, 500u);
  EXPECT_GE(summary.peak_bytes, summary.escaped_bytes);
  EXPECT_GE(summary.allocated_bytes, summary.peak_bytes);
  memward_thread_flush();
  EXPECT_EQ(Stats(id).live_bytes, static_cast<int64_t>(malloc_usable_size(cached)));
  free(cached);  // Owned by the tenant after the request ended.
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

// Returns the arena that most of `blocks` came from: the request's arena,
// since a sampled block lives in the sampler's arena instead. The map is
// freed before the caller's request ends.
unsigned MostCommonArena(const std::vector<void*>& blocks) {
  std::map<unsigned, int> blocks_per_arena;
  for (void* block : blocks) blocks_per_arena[ArenaOf(block)]++;
  unsigned arena = blocks_per_arena.begin()->first;
  for (const auto& [index, count] : blocks_per_arena) {
    if (count > blocks_per_arena[arena]) arena = index;
  }
  return arena;
}

TEST(Request, EmptyArenaPagesGoBack) {
  memward_tenant_id id = Register(UniqueName("purge"));
  std::vector<void*> blocks;
  blocks.reserve(4001);
  memward_request request;
  ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
  for (int i = 0; i < 4000; i++) blocks.push_back(Allocate(1000));
  blocks.push_back(Allocate(4 << 20));
  memset(blocks.back(), 1, 4 << 20);
  unsigned arena = MostCommonArena(blocks);
  // Request arenas purge freed pages at once (scope_dirty_decay is 0), so the
  // frees would leave nothing for the request's end to purge. A 10 s decay
  // keeps them dirty until then.
  std::string prefix = "stats.arenas." + std::to_string(arena);
  // A char array, because a std::string this long would be a block of the
  // request that escapes it.
  char decay_name[64];
  snprintf(decay_name, sizeof(decay_name), "arena.%u.dirty_decay_ms", arena);
  ssize_t scope_decay = -2;
  size_t length = sizeof(scope_decay);
  ASSERT_EQ(mallctl(decay_name, &scope_decay, &length, nullptr, 0), 0);
  ssize_t long_decay = 10000;
  ASSERT_EQ(mallctl(decay_name, nullptr, nullptr, &long_decay, sizeof(long_decay)), 0);
  for (void* block : blocks) free(block);
  memward_thread_flush();
  RefreshStats();
  size_t dirty_before = ReadSize(prefix + ".pdirty");
  memward_request_summary summary;
  ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);
  RefreshStats();
  const size_t dirty_after = ReadSize(prefix + ".pdirty");
  const size_t active_after = ReadSize(prefix + ".pactive");
  ASSERT_EQ(mallctl(decay_name, nullptr, nullptr, &scope_decay, sizeof(scope_decay)), 0);

  EXPECT_GT(dirty_before, 100u) << "the request should have left dirty pages";
  EXPECT_EQ(summary.escaped_bytes, 0u);
  EXPECT_EQ(dirty_after, 0u);
  EXPECT_EQ(active_after, 0u);
}

TEST(Request, StaleHandleIsRejected) {
  memward_tenant_id id = Register(UniqueName("stale"));
  memward_request request;
  ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
  memward_request copy = request;
  ASSERT_EQ(memward_request_end(&request, nullptr), MEMWARD_OK);
  EXPECT_EQ(memward_request_end(&copy, nullptr), MEMWARD_ERROR_STALE);
  memward_scope saved;
  EXPECT_EQ(memward_request_enter(&copy, &saved), MEMWARD_ERROR_STALE);
}

TEST(Request, EnterFromAnotherThread) {
  memward_tenant_id id = Register(UniqueName("async"));
  memward_request request;
  std::atomic<bool> begun{false};
  void* from_worker = nullptr;
  int enter_status = -1;
  // The thread starts before the request, so its own start-up is not charged.
  std::thread worker([&] {
    while (!begun.load()) std::this_thread::yield();
    memward_scope saved;
    enter_status = memward_request_enter(&request, &saved);
    from_worker = Allocate(5000);
    memward_scope_exit(&saved);
  });
  ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
  void* first = Allocate(100);
  begun = true;
  worker.join();
  EXPECT_EQ(enter_status, MEMWARD_OK);
  memward_request_summary summary;
  ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);
  EXPECT_EQ(summary.allocations, 2u);
  EXPECT_EQ(summary.escaped_bytes, malloc_usable_size(first) + malloc_usable_size(from_worker));
  free(first);
  free(from_worker);
}

// Arenas with escapes drain instead of returning to the pool; the pool is
// bounded by request_arenas, and drained arenas are reused.
TEST(Request, PoolIsBoundedAndRecycles) {
  memward_tenant_id id = Register(UniqueName("pool"));
  unsigned arenas_before = ReadUnsigned("arenas.narenas");
  std::vector<void*> escaped;
  escaped.reserve(100);
  int without_arena = 0;
  for (int i = 0; i < 100; i++) {
    memward_request request;
    ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
    escaped.push_back(Allocate(200));
    memward_request_summary summary;
    memward_request_end(&request, &summary);
    if (!summary.had_arena) without_arena++;
  }
  unsigned arenas_after = ReadUnsigned("arenas.narenas");
  EXPECT_LE(arenas_after - arenas_before, 64u);
  EXPECT_GT(without_arena, 0);
  for (void* block : escaped) free(block);
  for (int i = 0; i < 100; i++) {
    memward_request request;
    ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
    EXPECT_NE(request.slot, 0u) << "request " << i << " found no recycled arena";
    free(Allocate(100));
    memward_request_end(&request, nullptr);
  }
  EXPECT_EQ(ReadUnsigned("arenas.narenas"), arenas_after);
  memward_thread_flush();
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

TEST(Request, CppScopeEndsRequest) {
  auto tenant = Tenant::Register(UniqueName("raii"));
  ASSERT_TRUE(tenant.has_value());
  void* kept = nullptr;
  RequestSummary summary;
  {
    RequestScope request(*tenant);
    ASSERT_TRUE(request.status().ok());
    kept = Allocate(777);
    summary = request.End();
  }
  EXPECT_EQ(summary.escaped_bytes, malloc_usable_size(kept));
  free(kept);
}

// Fork while tenants and requests are open, with other threads allocating in
// scopes: the child finishes the request, allocates, and exits cleanly.
TEST(Request, ForkWithOpenRequests) {
  memward_tenant_id id = Register(UniqueName("fork"), true);
  memward_tenant_id busy = Register(UniqueName("fork-busy"));
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; t++) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        memward_request request;
        memward_request_begin(busy, &request);
        void* blocks[50];
        for (int i = 0; i < 50; i++) blocks[i] = Allocate(32 + i * 40);
        for (void* block : blocks) free(block);
        memward_request_end(&request, nullptr);
      }
    });
  }
  for (int round = 0; round < 30; round++) {
    memward_request request;
    ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
    void* block = Allocate(1000);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      void* more = Allocate(2000);
      memward_request_summary summary;
      int status = memward_request_end(&request, &summary);
      bool ok = status == MEMWARD_OK && summary.escaped_bytes == malloc_usable_size(block) +
                                                                  malloc_usable_size(more);
      memward_request child_request;
      ok = ok && memward_request_begin(busy, &child_request) == MEMWARD_OK;
      free(Allocate(100));
      memward_request_end(&child_request, nullptr);
      free(block);
      free(more);
      if (!ok) fprintf(stderr, "child: status %d escaped %llu expected %zu\n", status, (unsigned long long)summary.escaped_bytes, malloc_usable_size(block) + malloc_usable_size(more));
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "round " << round << ", wait status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "round " << round;
    free(block);
    memward_request_end(&request, nullptr);
  }
  stop = true;
  for (std::thread& worker : workers) worker.join();
}

}  // namespace
}  // namespace memward::testing

namespace memward::testing {
namespace {

TEST(Misuse, ScopeExitOutOfOrderIsRejected) {
  memward_tenant_id first = Register(UniqueName("order-a"));
  memward_tenant_id second = Register(UniqueName("order-b"));
  memward_scope outer, inner;
  ASSERT_EQ(memward_scope_enter(first, &outer), MEMWARD_OK);
  ASSERT_EQ(memward_scope_enter(second, &inner), MEMWARD_OK);
  EXPECT_EQ(memward_scope_exit(&outer), MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_scope_exit(&inner), MEMWARD_OK);
  EXPECT_EQ(memward_scope_exit(&inner), MEMWARD_ERROR_INVALID);  // twice
  int other_thread_status = -1;
  std::thread other([&] { other_thread_status = memward_scope_exit(&outer); });
  other.join();
  EXPECT_EQ(other_thread_status, MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_scope_exit(&outer), MEMWARD_OK);
  memward_scope forged = outer;
  forged.tenant = 4000;
  EXPECT_EQ(memward_scope_exit(&forged), MEMWARD_ERROR_INVALID);
}

TEST(Misuse, RequestEndedTwiceIsStale) {
  memward_tenant_id id = Register(UniqueName("twice"));
  memward_request request;
  ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
  ASSERT_EQ(memward_request_end(&request, nullptr), MEMWARD_OK);
  EXPECT_EQ(memward_request_end(&request, nullptr), MEMWARD_ERROR_STALE);
  memward_scope saved;
  EXPECT_EQ(memward_request_enter(&request, &saved), MEMWARD_ERROR_STALE);
}

TEST(Misuse, RequestEndWhileInsideElsewhereIsBusy) {
  memward_tenant_id id = Register(UniqueName("busy"));
  memward_request request;
  std::atomic<int> phase{0};
  std::thread worker([&] {
    while (phase.load() != 1) std::this_thread::yield();
    memward_scope saved;
    memward_request_enter(&request, &saved);
    phase = 2;
    while (phase.load() != 3) std::this_thread::yield();
    memward_scope_exit(&saved);
    phase = 4;
  });
  ASSERT_EQ(memward_request_begin(id, &request), MEMWARD_OK);
  phase = 1;
  while (phase.load() != 2) std::this_thread::yield();
  EXPECT_EQ(memward_request_end(&request, nullptr), MEMWARD_ERROR_BUSY);
  phase = 3;
  while (phase.load() != 4) std::this_thread::yield();
  worker.join();
  EXPECT_EQ(memward_request_end(&request, nullptr), MEMWARD_OK);
}

// A scope saved inside a request is restored as the tenant's own scope once
// the request has ended, so the arena's next request is not charged.
TEST(Misuse, ScopeExitAfterRequestEnded) {
  memward_tenant_id owner = Register(UniqueName("ended-owner"));
  memward_tenant_id inner_tenant = Register(UniqueName("ended-inner"));
  memward_request request;
  ASSERT_EQ(memward_request_begin(owner, &request), MEMWARD_OK);
  memward_scope inner;
  ASSERT_EQ(memward_scope_enter(inner_tenant, &inner), MEMWARD_OK);
  memward_request_summary summary;
  ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);  // not current here
  ASSERT_EQ(memward_scope_exit(&inner), MEMWARD_OK);
  void* block = Allocate(1000);
  memward_request next;
  memward_tenant_id next_tenant = Register(UniqueName("ended-next"));
  ASSERT_EQ(memward_request_begin(next_tenant, &next), MEMWARD_OK);
  memward_request_summary next_summary;
  memward_request_end(&next, &next_summary);
  EXPECT_EQ(next_summary.allocated_bytes, 0u);
  memward_scope_exit(&request.saved);  // leave the owner's scope
  memward_thread_flush();
  EXPECT_GE(Stats(owner).live_bytes, static_cast<int64_t>(malloc_usable_size(block)));
  free(block);
  EXPECT_EQ(Stats(owner).live_bytes, 0);
}

TEST(Misuse, HugeAlignmentInSharedScope) {
  memward_tenant_id id = Register(UniqueName("huge-align"));
  memward_scope saved;
  memward_scope_enter(id, &saved);
  errno = 0;
  void* block = aligned_alloc(size_t{1} << 32, 64);
  int saved_errno = errno;
  memward_scope_exit(&saved);
  EXPECT_EQ(block, nullptr);
  EXPECT_EQ(saved_errno, ENOMEM);
}

TEST(Misuse, LimitsSaturate) {
  memward_tenant_id id = Register(UniqueName("saturate"), true, 0, UINT64_MAX, true);
  memward_scope saved;
  memward_scope_enter(id, &saved);
  void* block = Allocate(100);
  memward_scope_exit(&saved);
  EXPECT_NE(block, nullptr);
  free(block);
  memward_tenant_set_limits(id, 0, 1000, 0);
  memward_admission answer;
  memward_admission_reason reason;
  ASSERT_EQ(memward_admit(id, UINT64_MAX - 100, &answer, &reason), MEMWARD_OK);
  EXPECT_EQ(answer, MEMWARD_REJECT);
}

}  // namespace
}  // namespace memward::testing
