// memward's own memory: under 4 KiB per tenant without a dedicated arena, and
// under 1% of the heap it accounts for.
#include <stdlib.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "tests/unit/tenant_test_util.h"

namespace memward::testing {
namespace {

memward_overhead ReadOverhead() {
  memward_overhead overhead{};
  EXPECT_EQ(memward_overhead_get(&overhead), MEMWARD_OK);
  return overhead;
}

TEST(Overhead, TenantWithoutArenaUnder4KiB) {
  memward_overhead before = ReadOverhead();
  constexpr int kTenants = 1000;
  for (int i = 0; i < kTenants; i++) {
    ASSERT_NE(Register(UniqueName("cost")), 0u);
  }
  memward_overhead after = ReadOverhead();
  uint64_t per_tenant = (after.total_bytes - before.total_bytes) / kTenants;
  EXPECT_LT(per_tenant, 4096u) << "total " << after.total_bytes << " before " << before.total_bytes;
}

// Eight threads fill a 256 MiB heap across 1,000 tenants (ten of them with a
// dedicated arena), each thread switching tenants as it goes.
TEST(Overhead, BookkeepingUnderOnePercent) {
  std::vector<memward_tenant_id> tenants;
  for (int i = 0; i < 1000; i++) {
    tenants.push_back(Register(UniqueName("heap"), /*dedicated=*/i % 100 == 0));
    ASSERT_NE(tenants.back(), 0u);
  }
  constexpr size_t kHeapPerThread = size_t{32} << 20;
  std::vector<std::vector<void*>> kept(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      std::mt19937 random(t + 7);
      kept[t].reserve(kHeapPerThread / 64);
      size_t total = 0;
      while (total < kHeapPerThread) {
        memward_scope saved;
        memward_scope_enter(tenants[random() % tenants.size()], &saved);
        for (int i = 0; i < 64 && total < kHeapPerThread; i++) {
          size_t size = 64 + random() % (random() % 8 == 0 ? 65536 : 2048);
          void* block = malloc(size);
          ASSERT_NE(block, nullptr);
          kept[t].push_back(block);
          total += size;
        }
        memward_scope_exit(&saved);
      }
      memward_thread_flush();
    });
  }
  for (std::thread& thread : threads) thread.join();
  memward_thread_flush();

  RefreshStats();
  size_t heap = ReadSize("stats.allocated");
  memward_overhead overhead = ReadOverhead();
  EXPECT_GE(heap, size_t{256} << 20);
  RecordProperty("overhead_bytes", std::to_string(overhead.total_bytes));
  RecordProperty("heap_bytes", std::to_string(heap));
  EXPECT_LT(overhead.total_bytes * 100, heap)
      << "tables " << overhead.table_bytes << ", thread blocks " << overhead.thread_block_bytes
      << ", explicit caches " << overhead.explicit_caches << " of "
      << overhead.explicit_cache_bytes << " bytes, heap " << heap;
  for (auto& blocks : kept) {
    for (void* block : blocks) free(block);
  }
}

}  // namespace
}  // namespace memward::testing
