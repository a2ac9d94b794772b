// The frame rule table's creation, its slow probes and its inserts.
#include "accounting/frame_rule_cache.h"

#include <sys/mman.h>

#include "alloc/macros.h"

namespace memward::accounting {
namespace {

// Written once by CreateFrameRuleCache outside malloc, before g_keys is
// published; read inside malloc.
constinit std::atomic<std::atomic<uint64_t>*> g_keys{nullptr};
constinit std::atomic<uint64_t>* g_rules = nullptr;

// Home entries in use minus 1. It only grows. Entries filled under a smaller
// mask stay where they are: each still pairs its key with its rule, and a
// walk that misses them under the larger mask fills another entry.
constinit std::atomic<uint64_t> g_home_mask{kFrameRuleFirstHomeEntries - 1};

constinit std::atomic<uint64_t> g_entry_count{0};
constinit std::atomic<uint64_t> g_unloads{0};
constinit std::atomic<uint64_t> g_misses{0};
constinit std::atomic<uint64_t> g_not_inserted{0};

}  // namespace

constexpr uint64_t kEntries = kFrameRuleHomeEntries + kFrameRuleProbes;

uint64_t FrameRuleCacheMappingBytes() {
  return (kEntries * kFrameRuleEntryBytes + 4095) & ~uint64_t{4095};
}

bool CreateFrameRuleCache(uint64_t max_bytes) {
  if (g_keys.load(std::memory_order_acquire) != nullptr) return true;
  uint64_t bytes = FrameRuleCacheMappingBytes();
  if (bytes > max_bytes) return false;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return false;
  auto* keys = static_cast<std::atomic<uint64_t>*>(memory);
  g_rules = keys + kEntries;
  g_keys.store(keys, std::memory_order_release);
  return true;
}

MEMWARD_TEXT FrameRuleTable CurrentFrameRuleTable() {
  FrameRuleTable table;
  table.keys = g_keys.load(std::memory_order_acquire);
  table.rules = g_rules;
  table.home_mask = g_home_mask.load(std::memory_order_relaxed);
  return table;
}

namespace {

// Doubles the home entries in use once half of them are filled, up to the
// mapping's kFrameRuleHomeEntries. Returns the table to insert into.
MEMWARD_TEXT FrameRuleTable GrowWhenHalfFull(FrameRuleTable table) {
  uint64_t homes = table.home_mask + 1;
  if (homes >= kFrameRuleHomeEntries ||
      g_entry_count.load(std::memory_order_relaxed) < homes / 2) {
    return table;
  }
  uint64_t expected = table.home_mask;
  g_home_mask.compare_exchange_strong(expected, homes * 2 - 1, std::memory_order_relaxed);
  return CurrentFrameRuleTable();
}

}  // namespace

MEMWARD_TEXT uint64_t FindFrameRuleAfterHome(uintptr_t return_address) {
  FrameRuleTable table = CurrentFrameRuleTable();
  uint64_t home = FrameRuleHome(return_address, table.home_mask);
  for (uint64_t i = home; i < home + kFrameRuleProbes; ++i) {
    uint64_t key = table.keys[i].load(std::memory_order_acquire);
    if (key == return_address) {
      uint64_t rule = table.rules[i].load(std::memory_order_acquire);
      return table.keys[i].load(std::memory_order_relaxed) == return_address ? rule : 0;
    }
    if (key == 0) return 0;
  }
  return 0;
}

MEMWARD_TEXT void InsertFrameRule(uintptr_t return_address, uint64_t packed_rule) {
  FrameRuleTable table = CurrentFrameRuleTable();
  if (table.keys == nullptr || return_address == 0) return;
  table = GrowWhenHalfFull(table);
  uint64_t home = FrameRuleHome(return_address, table.home_mask);
  for (uint64_t i = home; i < home + kFrameRuleProbes; ++i) {
    uint64_t key = table.keys[i].load(std::memory_order_acquire);
    if (key == 0) {
      if (table.keys[i].compare_exchange_strong(key, return_address, std::memory_order_acq_rel)) {
        table.rules[i].store(packed_rule, std::memory_order_release);
        g_entry_count.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      // Another thread took the entry, and `key` now contains its address.
    }
    if (key == return_address) {
      // Both threads computed the same rule from the same CFI.
      table.rules[i].store(packed_rule, std::memory_order_release);
      return;
    }
  }
  g_not_inserted.fetch_add(1, std::memory_order_relaxed);
}

MEMWARD_TEXT void CountFrameRuleMiss() { g_misses.fetch_add(1, std::memory_order_relaxed); }

MEMWARD_TEXT void DropFrameRulesAfterUnload(uint64_t unloads) {
  uint64_t seen = g_unloads.load(std::memory_order_acquire);
  if (seen == unloads) return;
  if (!g_unloads.compare_exchange_strong(seen, unloads, std::memory_order_acq_rel)) return;
  FrameRuleTable table = CurrentFrameRuleTable();
  if (table.keys == nullptr) return;
  // Each rule goes before its key, so a reader that still finds the key
  // loads 0 (a miss) or the old rule, and its second read of the key
  // rejects a rule that a new address stored meanwhile. Only the prefix in
  // use is written, so the pages past it stay untouched, and a doubling
  // during the loop extends the range.
  uint64_t cleared = 0;
  for (;;) {
    uint64_t end = table.home_mask + 1 + kFrameRuleProbes;
    for (uint64_t i = cleared; i < end; ++i) {
      table.rules[i].store(0, std::memory_order_release);
      table.keys[i].store(0, std::memory_order_release);
    }
    cleared = end;
    table = CurrentFrameRuleTable();
    if (table.home_mask + 1 + kFrameRuleProbes == cleared) break;
  }
  g_entry_count.store(0, std::memory_order_relaxed);
}

FrameRuleCacheCounts ReadFrameRuleCacheCounts() {
  FrameRuleCacheCounts counts;
  bool mapped = g_keys.load(std::memory_order_acquire) != nullptr;
  counts.mapped_bytes = mapped ? FrameRuleCacheMappingBytes() : 0;
  counts.entries = g_entry_count.load(std::memory_order_relaxed);
  counts.home_entries = g_home_mask.load(std::memory_order_relaxed) + 1;
  counts.misses = g_misses.load(std::memory_order_relaxed);
  counts.not_inserted = g_not_inserted.load(std::memory_order_relaxed);
  return counts;
}

}  // namespace memward::accounting
