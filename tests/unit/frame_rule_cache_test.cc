// Tests of the frame rule cache on its own, with the C library's malloc.
// They cover inserts, lookups and the emptying after an unload, from one
// thread and from several. CTest also runs them built with
// ThreadSanitizer, which cannot share a process with memward's malloc.
#include <stdint.h>

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "accounting/frame_rule_cache.h"

namespace memward::testing {
namespace {

// The rule that these tests pair with made-up address number `i`.
constexpr uint64_t RuleOf(uint64_t i) { return 0x100 + i; }

// The loader's unload count that the next reported unload gives.
std::atomic<uint64_t> g_next_unloads{1};

void ReportUnload() { accounting::DropFrameRulesAfterUnload(g_next_unloads.fetch_add(1)); }

// Returns false, with a failure, when an entry of the table in use has a
// rule but no key, or one of the `count` made-up addresses from `base`, 8
// bytes apart, with a rule other than its own.
bool RulesArePaired(uintptr_t base, uint64_t count) {
  accounting::FrameRuleTable table = accounting::CurrentFrameRuleTable();
  const uint64_t entries = table.home_mask + 1 + accounting::kFrameRuleProbes;
  for (uint64_t i = 0; i < entries; ++i) {
    uint64_t key = table.keys[i].load(std::memory_order_acquire);
    uint64_t rule = table.rules[i].load(std::memory_order_acquire);
    if (key == 0 && rule != 0) {
      ADD_FAILURE() << "entry " << i << " has rule " << rule << " but no key";
      return false;
    }
    if (key < base || key - base >= count * 8 || rule == 0) continue;
    if ((key - base) % 8 != 0 || rule != RuleOf((key - base) / 8)) {
      ADD_FAILURE() << "entry " << i << " pairs key " << key << " with rule " << rule;
      return false;
    }
  }
  return true;
}

class FrameRuleCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(accounting::CreateFrameRuleCache(uint64_t{16} << 20));
    ReportUnload();  // starts each test with an empty table
  }
};

TEST_F(FrameRuleCacheTest, InsertedRuleIsFound) {
  const uintptr_t address = uintptr_t{0x7b0000001234};
  accounting::FrameRuleTable table = accounting::CurrentFrameRuleTable();
  EXPECT_EQ(accounting::FindFrameRule(table, address), 0u);
  accounting::InsertFrameRule(address, RuleOf(7));
  table = accounting::CurrentFrameRuleTable();
  EXPECT_EQ(accounting::FindFrameRule(table, address), RuleOf(7));
  ReportUnload();
  EXPECT_EQ(accounting::FindFrameRule(accounting::CurrentFrameRuleTable(), address), 0u);
}

// An unload reported between an insert's claim of a key and its store of
// the rule leaves the entry to a later miss. Emptying it there would leave
// the rule in an empty entry, for the next address that takes the entry.
TEST_F(FrameRuleCacheTest, UnloadDuringInsertWaitsForLaterMiss) {
  const uintptr_t base = uintptr_t{0x7c0000000000};
  accounting::SetFrameRuleInsertHookForTesting(ReportUnload);
  accounting::InsertFrameRule(base, RuleOf(0));
  accounting::SetFrameRuleInsertHookForTesting(nullptr);
  EXPECT_TRUE(RulesArePaired(base, 1));
  EXPECT_EQ(accounting::FindFrameRule(accounting::CurrentFrameRuleTable(), base), RuleOf(0));

  ReportUnload();  // the later miss
  EXPECT_EQ(accounting::FindFrameRule(accounting::CurrentFrameRuleTable(), base), 0u)
      << "the later miss did not empty the table";
  EXPECT_TRUE(RulesArePaired(base, 1));
}

// Two threads cache 48 made-up addresses 8 bytes apart, over and over,
// while this thread reports an unload at every step. No lookup may find an
// address with another's rule, and the table must end paired.
TEST_F(FrameRuleCacheTest, InsertsRacingUnloadsKeepRulesPaired) {
  constexpr uint64_t kCount = 48;
  constexpr uint64_t kPasses = 20000;
  const uintptr_t base = uintptr_t{0x7d0000000000};
  std::atomic<bool> done{false};
  std::atomic<uint64_t> mismatches{0};
  std::atomic<uint64_t> passes{0};
  auto cache = [&] {
    while (!done.load(std::memory_order_relaxed)) {
      for (uint64_t i = 0; i < kCount; ++i) {
        accounting::FrameRuleTable table = accounting::CurrentFrameRuleTable();
        uint64_t rule = accounting::FindFrameRule(table, base + i * 8);
        if (rule != 0 && rule != RuleOf(i)) mismatches.fetch_add(1);
        if (rule == 0) accounting::InsertFrameRule(base + i * 8, RuleOf(i));
      }
      passes.fetch_add(1, std::memory_order_relaxed);
    }
  };
  std::thread first(cache);
  std::thread second(cache);
  while (passes.load(std::memory_order_relaxed) < kPasses) ReportUnload();
  done.store(true);
  first.join();
  second.join();
  EXPECT_EQ(mismatches.load(), 0u);
  EXPECT_TRUE(RulesArePaired(base, kCount));
}

}  // namespace
}  // namespace memward::testing
