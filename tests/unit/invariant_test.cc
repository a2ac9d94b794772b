// The counting invariant: after counters and thread caches are flushed, the
// live bytes counted for tenants equal what jemalloc reports as allocated.
//
//   sum over tenants >= 1 of live_bytes + sampled untagged bytes
//                                       == allocated bytes of memward's arenas
//   live_bytes(process) + that sum      == stats.allocated
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "tests/unit/tenant_test_util.h"

namespace memward::testing {
namespace {

constexpr int kTenants = 1000;
constexpr int kThreads = 64;
constexpr int kRoundsPerThread = 60;

// Blocks handed between threads, so that most frees happen on another thread
// and in another tenant's scope than the allocation.
struct Exchange {
  std::mutex mutex;
  std::vector<void*> blocks;

  void Put(void* block) {
    std::lock_guard<std::mutex> lock(mutex);
    blocks.push_back(block);
  }
  void* Take() {
    std::lock_guard<std::mutex> lock(mutex);
    if (blocks.empty()) return nullptr;
    void* block = blocks.back();
    blocks.pop_back();
    return block;
  }
};

void* AllocateMixed(std::mt19937& random) {
  switch (random() % 6) {
    case 0: return malloc(8 + random() % 256);
    case 1: return calloc(1, 1000 + random() % 8000);
    case 2: return aligned_alloc(size_t{64} << (random() % 6), 300);
    case 3: return malloc((1 << 20) + random() % (1 << 20));  // large
    case 4: {
      void* block = malloc(100);
      return realloc(block, 2000 + random() % 20000);
    }
    default: return malloc(30000 + random() % 50000);
  }
}

void RunWorker(const std::vector<memward_tenant_id>& tenants, Exchange& exchange, int seed) {
  std::mt19937 random(seed);
  std::vector<void*> own;
  for (int round = 0; round < kRoundsPerThread; round++) {
    memward_tenant_id tenant = tenants[random() % tenants.size()];
    memward_request request;
    bool in_request = random() % 2 == 0;
    memward_scope saved;
    if (in_request) {
      memward_request_begin(tenant, &request);
    } else {
      memward_scope_enter(tenant, &saved);
    }
    for (int i = 0; i < 20; i++) {
      void* block = AllocateMixed(random);
      if (block == nullptr) continue;
      if (random() % 3 == 0) {
        exchange.Put(block);
      } else {
        own.push_back(block);
      }
    }
    // Free others' blocks and move own blocks into this scope's tenant.
    for (int i = 0; i < 4; i++) free(exchange.Take());
    if (!own.empty() && random() % 2 == 0) own.back() = realloc(own.back(), 5000);
    while (own.size() > 30) {
      free(own.back());
      own.pop_back();
    }
    if (in_request) {
      memward_request_end(&request, nullptr);
    } else {
      memward_scope_exit(&saved);
    }
  }
  for (void* block : own) free(block);
}

TEST(Invariant, TenantSumsEqualJemalloc) {
  std::vector<memward_tenant_id> tenants;
  for (int i = 0; i < kTenants; i++) {
    memward_tenant_id id = Register("invariant-" + std::to_string(i), i % 100 == 0);
    ASSERT_NE(id, 0u) << "tenant " << i;
    tenants.push_back(id);
  }
  Exchange exchange;
  // Reserved up front: a buffer grown inside a scope would belong to that
  // scope's tenant, which is right but would leave it live at the end.
  exchange.blocks.reserve(kThreads * kRoundsPerThread * 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back(RunWorker, std::cref(tenants), std::ref(exchange), t + 1);
  }
  for (std::thread& thread : threads) thread.join();

  // Keep some blocks alive across the check, owned by several tenants.
  size_t survivors = exchange.blocks.size();
  ASSERT_GT(survivors, 0u);
  memward_thread_flush();

  size_t count = 0;
  memward_tenant_stats_list(nullptr, 0, &count);
  std::vector<memward_tenant_stats> stats(count);
  ASSERT_EQ(memward_tenant_stats_list(stats.data(), stats.size(), &count), MEMWARD_OK);
  int64_t tenant_sum = 0;
  int64_t process_live = 0;
  for (const memward_tenant_stats& tenant : stats) {
    EXPECT_GE(tenant.live_bytes, 0) << tenant.name;
    if (tenant.id == 0) {
      process_live = tenant.live_bytes;
    } else {
      tenant_sum += tenant.live_bytes;
    }
  }

  RefreshStats();
  unsigned automatic = ReadUnsigned("opt.narenas");
  unsigned total = ReadUnsigned("arenas.narenas");
  int64_t memward_arenas = 0;
  for (unsigned arena = automatic; arena < total; arena++) {
    memward_arenas += static_cast<int64_t>(ArenaAllocated(arena));
  }
  // Sampled untagged blocks are the process's, held by the sampler's arena.
  memward_sampler_stats sampler{};
  ASSERT_EQ(memward_sampler_stats_get(&sampler), MEMWARD_OK);
  EXPECT_EQ(tenant_sum + sampler.process_sampled_bytes, memward_arenas);
  EXPECT_EQ(process_live + tenant_sum, static_cast<int64_t>(ReadSize("stats.allocated")));

  for (void* block : exchange.blocks) free(block);
  exchange.blocks.clear();
  exchange.blocks.shrink_to_fit();
  memward_thread_flush();
  for (memward_tenant_id id : tenants) {
    EXPECT_EQ(Stats(id).live_bytes, 0) << "tenant " << id;
  }
}

}  // namespace
}  // namespace memward::testing
