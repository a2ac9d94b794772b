// Tenants, scopes, ownership and budgets through the C and C++ APIs.
#include <errno.h>
#include <pthread.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "memward/memward.hpp"
#include "tests/unit/tenant_test_util.h"

extern "C" void* mallocx(size_t size, int flags);

namespace memward::testing {
namespace {

// jemalloc 5.3's MALLOCX_ARENA(0).
constexpr int kMallocxArenaZero = 1 << 20;

TEST(Tenant, RegisterAndFind) {
  std::string name = UniqueName("register");
  memward_tenant_id id = Register(name);
  ASSERT_GE(id, 2u);
  memward_tenant_id found = 0;
  EXPECT_EQ(memward_tenant_find(name.c_str(), &found), MEMWARD_OK);
  EXPECT_EQ(found, id);
  memward_tenant_id again = 0;
  EXPECT_EQ(memward_tenant_register(name.c_str(), nullptr, &again), MEMWARD_ERROR_EXISTS);
  EXPECT_EQ(again, id);
  EXPECT_EQ(memward_tenant_find("no-such-tenant", &found), MEMWARD_ERROR_NOT_FOUND);
}

TEST(Tenant, RejectsInvalidNames) {
  memward_tenant_id id = 0;
  EXPECT_EQ(memward_tenant_register("", nullptr, &id), MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_tenant_register(nullptr, nullptr, &id), MEMWARD_ERROR_INVALID);
  std::string long_name(MEMWARD_MAX_TENANT_NAME + 1, 'x');
  EXPECT_EQ(memward_tenant_register(long_name.c_str(), nullptr, &id), MEMWARD_ERROR_INVALID);
  EXPECT_STREQ(memward_strerror(MEMWARD_ERROR_INVALID), "invalid argument");
}

TEST(Tenant, ScopeChargesTenant) {
  memward_tenant_id id = Register(UniqueName("charge"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  void* block = Allocate(1000);
  memward_scope_exit(&saved);
  memward_thread_flush();
  memward_tenant_stats stats = Stats(id);
  EXPECT_EQ(stats.live_bytes, static_cast<int64_t>(malloc_usable_size(block)));
  EXPECT_EQ(stats.allocations, 1u);
  EXPECT_TRUE(stats.dedicated_arena);
  free(block);
  stats = Stats(id);
  EXPECT_EQ(stats.live_bytes, 0);
  EXPECT_EQ(stats.frees, 1u);
}

// Inside a scope the sampling countdown is parked, so that malloc's one
// test sends every allocation to the routed path. Requests too large to
// succeed move the countdown the furthest; the scope must still route and
// charge the allocations after them.
TEST(Tenant, HugeRequestsKeepScopeRouting) {
  memward_tenant_id id = Register(UniqueName("huge"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
  const volatile size_t huge_sizes[] = {size_t{1} << 63, SIZE_MAX, (size_t{1} << 62) + 1,
                                        (size_t{1} << 63) + 4096};
  for (size_t huge : huge_sizes) {
    errno = 0;
    EXPECT_EQ(Allocate(huge), nullptr) << huge;
    EXPECT_EQ(errno, ENOMEM) << huge;
  }
  void* empty = Allocate(0);
  void* block = Allocate(1000);
  memward_scope_exit(&saved);
  memward_thread_flush();

  memward_tenant_stats stats = Stats(id);
  EXPECT_EQ(stats.allocations, 2u);
  EXPECT_EQ(stats.live_bytes,
            static_cast<int64_t>(malloc_usable_size(empty) + malloc_usable_size(block)));
  free(empty);
  free(block);
}

// Every entry point that runs the parked countdown out must settle it before
// it returns, even one that then fails or serves an explicit arena.
// Otherwise the countdown keeps the wrapped value and the scope's next
// malloc takes the fast path, uncharged.
TEST(Tenant, FailedCallsKeepScopeRouting) {
  memward_tenant_id id = Register(UniqueName("failed-calls"), /*dedicated=*/true);
  ASSERT_NE(id, 0u);
  const volatile size_t huge = size_t{1} << 62;
  const volatile size_t half = (size_t{1} << 32) + 1;
  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);

  errno = 0;
  EXPECT_EQ(calloc(half, half), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* after_calloc = Allocate(100);

  EXPECT_EQ(operator new(huge, std::nothrow), nullptr);
  void* after_new = Allocate(100);

  errno = 0;
  EXPECT_EQ(aligned_alloc(64, huge), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* after_aligned = Allocate(100);

  void* resized = Allocate(100);
  errno = 0;
  EXPECT_EQ(realloc(resized, huge), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* after_realloc = Allocate(100);

  // Arena 0 is an automatic arena, which a caller may name.
  void* explicit_arena = mallocx(huge, kMallocxArenaZero);
  EXPECT_EQ(explicit_arena, nullptr);
  void* after_mallocx = Allocate(100);

  memward_scope_exit(&saved);
  memward_thread_flush();

  void* charged[] = {after_calloc, after_new, after_aligned, resized, after_realloc,
                     after_mallocx};
  int64_t expected = 0;
  for (void* block : charged) {
    ASSERT_NE(block, nullptr);
    expected += static_cast<int64_t>(malloc_usable_size(block));
  }
  memward_tenant_stats stats = Stats(id);
  EXPECT_EQ(stats.allocations, 6u);
  EXPECT_EQ(stats.live_bytes, expected);
  for (void* block : charged) free(block);
}

TEST(Tenant, NestedScopesRestore) {
  memward_tenant_id outer = Register(UniqueName("outer"));
  memward_tenant_id inner = Register(UniqueName("inner"), true);
  memward_scope outer_saved, inner_saved;
  ASSERT_EQ(memward_scope_enter(outer, &outer_saved), MEMWARD_OK);
  void* first = Allocate(64);
  ASSERT_EQ(memward_scope_enter(inner, &inner_saved), MEMWARD_OK);
  void* second = Allocate(128);
  memward_scope_exit(&inner_saved);
  void* third = Allocate(256);
  memward_scope_exit(&outer_saved);
  memward_thread_flush();
  EXPECT_EQ(Stats(outer).allocations, 2u);
  EXPECT_EQ(Stats(inner).allocations, 1u);
  EXPECT_EQ(Stats(outer).live_bytes,
            static_cast<int64_t>(malloc_usable_size(first) + malloc_usable_size(third) + 32));
  free(first);
  free(second);
  free(third);
  EXPECT_EQ(Stats(outer).live_bytes, 0);
  EXPECT_EQ(Stats(inner).live_bytes, 0);
}

// A tenant without a dedicated arena pays for its 16-byte owner header, so its
// charge is the usable size of the whole block.
TEST(Tenant, SharedArenaHeaderIsCharged) {
  memward_tenant_id id = Register(UniqueName("shared"));
  memward_scope saved;
  memward_scope_enter(id, &saved);
  void* block = Allocate(100);
  void* aligned = aligned_alloc(4096, 100);
  memward_scope_exit(&saved);
  memward_thread_flush();
  EXPECT_GE(malloc_usable_size(block), 100u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 4096, 0u);
  EXPECT_GE(malloc_usable_size(aligned), 100u);
  EXPECT_EQ(Stats(id).live_bytes,
            static_cast<int64_t>(malloc_usable_size(block) + 16 + malloc_usable_size(aligned) + 4096));
  free(block);
  free(aligned);
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

TEST(Tenant, CrossThreadFreeCreditsOwner) {
  for (bool dedicated : {true, false}) {
    memward_tenant_id owner = Register(UniqueName("cross-thread"), dedicated);
    memward_tenant_id other = Register(UniqueName("bystander"), dedicated);
    std::vector<void*> blocks;
    blocks.reserve(1001);  // The vector's own buffer must not be charged to the scope.
    memward_scope saved;
    memward_scope_enter(owner, &saved);
    for (size_t i = 0; i < 1000; i++) blocks.push_back(Allocate(16 + i * 7));
    blocks.push_back(Allocate(3 << 20));
    memward_scope_exit(&saved);
    memward_thread_flush();
    int64_t live = Stats(owner).live_bytes;
    EXPECT_GT(live, 3 << 20);
    std::thread worker([&] {
      memward_scope worker_saved;
      memward_scope_enter(other, &worker_saved);  // Frees in another tenant's scope.
      for (void* block : blocks) free(block);
      memward_scope_exit(&worker_saved);
    });
    worker.join();
    EXPECT_EQ(Stats(owner).live_bytes, 0) << "dedicated " << dedicated;
    EXPECT_EQ(Stats(owner).frees, 1001u);
    EXPECT_EQ(Stats(other).live_bytes, 0);
    EXPECT_EQ(Stats(other).frees, 0u);
  }
}

TEST(Tenant, ReallocAcrossTenantsMovesCharge) {
  memward_tenant_id first = Register(UniqueName("realloc-a"), true);
  memward_tenant_id second = Register(UniqueName("realloc-b"));
  memward_scope saved;
  memward_scope_enter(first, &saved);
  char* block = static_cast<char*>(Allocate(100));
  strcpy(block, "payload");
  memward_scope_exit(&saved);
  memward_scope_enter(second, &saved);
  block = static_cast<char*>(realloc(block, 5000));
  memward_scope_exit(&saved);
  ASSERT_NE(block, nullptr);
  EXPECT_STREQ(block, "payload");
  memward_thread_flush();
  EXPECT_EQ(Stats(first).live_bytes, 0);
  EXPECT_EQ(Stats(second).live_bytes, static_cast<int64_t>(malloc_usable_size(block) + 16));
  block = static_cast<char*>(realloc(block, 50));  // Untagged now.
  EXPECT_STREQ(block, "payload");
  EXPECT_EQ(Stats(second).live_bytes, 0);
  free(block);
}

TEST(Tenant, ReallocInScopeResizes) {
  memward_tenant_id id = Register(UniqueName("resize"), true);
  memward_scope saved;
  memward_scope_enter(id, &saved);
  char* block = static_cast<char*>(Allocate(10));
  strcpy(block, "abc");
  for (size_t size : {100, 10000, 1 << 20, 40}) {
    block = static_cast<char*>(realloc(block, size));
    ASSERT_NE(block, nullptr);
    EXPECT_STREQ(block, "abc");
  }
  memward_scope_exit(&saved);
  memward_thread_flush();
  EXPECT_EQ(Stats(id).live_bytes, static_cast<int64_t>(malloc_usable_size(block)));
  free(block);
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

TEST(Budget, HardLimitRefusesAllocation) {
  memward_tenant_id id = Register(UniqueName("hard"), true, 0, 1 << 20, true);
  memward_scope saved;
  memward_scope_enter(id, &saved);
  void* within = Allocate(512 << 10);
  ASSERT_NE(within, nullptr);
  errno = 0;
  void* beyond = Allocate(768 << 10);
  int saved_errno = errno;
  memward_scope_exit(&saved);
  EXPECT_EQ(beyond, nullptr);
  EXPECT_EQ(saved_errno, ENOMEM);
  memward_thread_flush();
  memward_tenant_stats stats = Stats(id);
  EXPECT_EQ(stats.refused_allocations, 1u);
  EXPECT_EQ(stats.allocations, 1u);
  EXPECT_EQ(stats.live_bytes, static_cast<int64_t>(malloc_usable_size(within)));
  free(within);
}

TEST(Budget, HardLimitThrowsBadAlloc) {
  auto tenant = Tenant::Register(UniqueName("hard-new"), {.hard_limit = 1 << 20,
                                                          .enforce_hard_limit = true});
  ASSERT_TRUE(tenant.has_value());
  bool threw = false;
  void* nothrow_result = &threw;
  {
    TenantScope scope(*tenant);
    ASSERT_TRUE(scope.status().ok());
    try {
      g_sink = ::operator new[](2 << 20);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    nothrow_result = ::operator new(2 << 20, std::nothrow);
  }
  EXPECT_TRUE(threw);
  EXPECT_EQ(nothrow_result, nullptr);
  FlushThread();
  EXPECT_EQ(tenant->Stats()->refused_allocations, 2u);
  EXPECT_EQ(tenant->Stats()->live_bytes, 0);
}

TEST(Budget, UnenforcedHardLimitOnlyAffectsAdmission) {
  memward_tenant_id id = Register(UniqueName("soft-only"), true, 0, 1 << 20, false);
  memward_scope saved;
  memward_scope_enter(id, &saved);
  void* beyond = Allocate(2 << 20);
  memward_scope_exit(&saved);
  EXPECT_NE(beyond, nullptr);
  memward_thread_flush();
  memward_admission answer;
  memward_admission_reason reason;
  ASSERT_EQ(memward_admit(id, 1, &answer, &reason), MEMWARD_OK);
  EXPECT_EQ(answer, MEMWARD_REJECT);
  EXPECT_EQ(reason, MEMWARD_REASON_HARD_LIMIT);
  free(beyond);
}

TEST(Budget, AdmissionFollowsLimits) {
  auto tenant = Tenant::Register(UniqueName("admission"), {.soft_limit = 1000, .hard_limit = 2000});
  ASSERT_TRUE(tenant.has_value());
  EXPECT_EQ(tenant->Admit(500).answer, Admission::kAdmit);
  AdmissionResult shed = tenant->Admit(1500);
  EXPECT_EQ(shed.answer, Admission::kShed);
  EXPECT_EQ(shed.reason, AdmissionReason::kSoftLimit);
  AdmissionResult reject = tenant->Admit(2500);
  EXPECT_EQ(reject.answer, Admission::kReject);
  EXPECT_EQ(reject.reason, AdmissionReason::kHardLimit);
  ASSERT_TRUE(tenant->SetLimits(10000, 20000, false).ok());
  EXPECT_EQ(tenant->Admit(2500).answer, Admission::kAdmit);
  ASSERT_TRUE(tenant->SetLimits(0, 0, false).ok());
  EXPECT_EQ(tenant->Admit(1ull << 40).answer, Admission::kAdmit);
  memward_tenant_stats stats = *tenant->Stats();
  EXPECT_EQ(stats.admitted, 3u);
  EXPECT_EQ(stats.shed, 1u);
  EXPECT_EQ(stats.rejected, 1u);
}

TEST(Budget, AdmissionCountsLiveBytes) {
  memward_tenant_id id = Register(UniqueName("admission-live"), true, 1 << 20, 4 << 20);
  memward_scope saved;
  memward_scope_enter(id, &saved);
  void* block = Allocate(3 << 20);
  memward_admission answer;
  memward_admission_reason reason;
  memward_admit(id, 512 << 10, &answer, &reason);  // Sees the unpublished batch.
  memward_scope_exit(&saved);
  EXPECT_EQ(answer, MEMWARD_SHED);
  free(block);
  memward_admit(id, 512 << 10, &answer, &reason);
  EXPECT_EQ(answer, MEMWARD_ADMIT);
}

// The published live bytes of a tenant lag the truth by at most one batch per
// thread: kBatchBytes (1 MiB) plus the allocation that crossed it.
TEST(Counting, PublishedLagIsBounded) {
  memward_tenant_id id = Register(UniqueName("lag"), true);
  std::vector<void*> blocks;
  blocks.reserve(20000);
  memward_scope saved;
  memward_scope_enter(id, &saved);
  int64_t truth = 0;
  for (int i = 0; i < 20000; i++) {
    void* block = Allocate(100 + (i % 50) * 16);
    truth += static_cast<int64_t>(malloc_usable_size(block));
    blocks.push_back(block);
    int64_t published = Stats(id).live_bytes;
    ASSERT_LE(published, truth);
    ASSERT_LE(truth - published, (1 << 20) + 1024) << "after " << i << " allocations";
  }
  memward_scope_exit(&saved);
  EXPECT_EQ(Stats(id).live_bytes, truth);  // Exiting the scope publishes.
  for (void* block : blocks) free(block);
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

// A thread may exit inside a scope, and its thread_local destructors may
// still allocate after memward has returned the thread's caches.
struct AllocatesOnExit {
  void* kept = nullptr;
  ~AllocatesOnExit() {
    void* block = malloc(300);
    free(block);
    free(kept);
  }
};

void AllocateInKeyDestructor(void* value) {
  void* block = malloc(200);
  free(block);
  free(value);
}

// Small blocks tag their pages with their size class (alloc/page_tags.h).
// Once they are freed and the thread's caches are emptied, jemalloc reuses
// those pages for other blocks: over-aligned, zeroed, large and resized ones,
// which take other paths. Each free must still charge the block's own size;
// a stale tag would file a block under the old class and charge too little.
TEST(Tenant, ReusedPagesChargeTheirOwnSize) {
  for (bool dedicated : {true, false}) {
    memward_tenant_id id = Register(UniqueName("page-reuse"), dedicated);
    // The vectors' own buffers are allocated before the scope.
    std::vector<void*> small;
    small.reserve(4096);
    std::vector<void*> reused;
    reused.reserve(3 * 64);
    memward_scope saved;
    ASSERT_EQ(memward_scope_enter(id, &saved), MEMWARD_OK);
    for (int i = 0; i < 4096; i++) small.push_back(Allocate(48));
    for (void* block : small) free(block);
    memward_thread_flush();  // the slabs go back to the arena, empty
    for (int i = 0; i < 64; i++) {
      void* aligned = nullptr;
      ASSERT_EQ(posix_memalign(&aligned, 4096, 4096 * (1 + i % 3)), 0);
      reused.push_back(aligned);
      reused.push_back(calloc(1, 24 * 1024));
      void* resized = Allocate(40 * 1024);
      reused.push_back(realloc(resized, 36 * 1024));
    }
    for (void* block : reused) free(block);
    memward_scope_exit(&saved);
    memward_thread_flush();
    memward_tenant_stats stats = Stats(id);
    EXPECT_EQ(stats.live_bytes, 0) << (dedicated ? "dedicated" : "shared");
    EXPECT_EQ(stats.allocated_bytes, stats.freed_bytes);
  }
}

TEST(Tenant, ThreadExitsInsideScope) {
  memward_tenant_id id = Register(UniqueName("exit-in-scope"), true);
  // memward's own key exists after the first scope; this one is created
  // later, so its destructor runs after memward has returned the caches.
  memward_scope warm_up;
  memward_scope_enter(id, &warm_up);
  memward_scope_exit(&warm_up);
  pthread_key_t late_key;
  ASSERT_EQ(pthread_key_create(&late_key, AllocateInKeyDestructor), 0);
  void* escaped = nullptr;
  std::thread worker([&] {
    static thread_local AllocatesOnExit on_exit;
    pthread_setspecific(late_key, malloc(1));
    memward_scope saved;
    memward_scope_enter(id, &saved);
    on_exit.kept = Allocate(500);
    escaped = Allocate(700);
    // No scope exit: the thread ends inside the scope.
  });
  worker.join();
  pthread_key_delete(late_key);
  EXPECT_EQ(Stats(id).live_bytes, static_cast<int64_t>(malloc_usable_size(escaped)));
  free(escaped);
  EXPECT_EQ(Stats(id).live_bytes, 0);
}

TEST(Api, CallsOutsideMemwardAreSafe) {
  EXPECT_STREQ(memward_library_kind(), "linked");
  EXPECT_EQ(memward_scope_exit(nullptr), MEMWARD_ERROR_INVALID);
  memward_scope saved;
  EXPECT_EQ(memward_scope_enter(3999, &saved), MEMWARD_ERROR_NOT_FOUND);
  memward_tenant_stats stats;
  EXPECT_EQ(memward_tenant_stats_get(3999, &stats), MEMWARD_ERROR_NOT_FOUND);
  EXPECT_EQ(memward_tenant_stats_get(0, &stats), MEMWARD_OK);
  EXPECT_STREQ(stats.name, "process");
  EXPECT_GT(stats.live_bytes, 0);
}

}  // namespace
}  // namespace memward::testing
