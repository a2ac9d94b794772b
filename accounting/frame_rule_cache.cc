// The frame rule table's creation, its slow probes and its inserts.
#include "accounting/frame_rule_cache.h"

#include <sys/mman.h>

#include "alloc/macros.h"

namespace memward::accounting {
namespace {

static_assert(sizeof(FrameRuleEntry) == 16);

// Written once by CreateFrameRuleCache outside malloc, before g_entries is
// published; read inside malloc.
constinit std::atomic<FrameRuleEntry*> g_entries{nullptr};
constinit uint32_t g_shift = 64;
constinit uint64_t g_mapped_bytes = 0;

constinit std::atomic<uint64_t> g_entry_count{0};
constinit std::atomic<uint64_t> g_misses{0};
constinit std::atomic<uint64_t> g_not_inserted{0};

}  // namespace

bool CreateFrameRuleCache(uint64_t max_bytes) {
  if (g_entries.load(std::memory_order_acquire) != nullptr) return true;
  uint64_t extra = kFrameRuleProbes * sizeof(FrameRuleEntry);
  if (max_bytes < 4096 + extra) return false;
  uint64_t home_entries = 4096 / sizeof(FrameRuleEntry);
  uint32_t bits = 8;
  while ((home_entries * 2) * sizeof(FrameRuleEntry) + extra <= max_bytes) {
    home_entries *= 2;
    bits++;
  }
  uint64_t bytes = home_entries * sizeof(FrameRuleEntry) + extra;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return false;
  g_shift = 64 - bits;
  g_mapped_bytes = (bytes + 4095) & ~uint64_t{4095};
  g_entries.store(static_cast<FrameRuleEntry*>(memory), std::memory_order_release);
  return true;
}

MEMWARD_TEXT FrameRuleTable CurrentFrameRuleTable() {
  FrameRuleTable table;
  table.entries = g_entries.load(std::memory_order_acquire);
  table.shift = g_shift;
  return table;
}

MEMWARD_TEXT uint64_t FindFrameRuleAfterHome(FrameRuleTable table, uintptr_t return_address) {
  uint64_t home = FrameRuleHome(table, return_address);
  for (uint64_t i = 0; i < kFrameRuleProbes; ++i) {
    FrameRuleEntry& entry = table.entries[home + i];
    uint64_t key = entry.key.load(std::memory_order_acquire);
    if (key == return_address) return entry.rule.load(std::memory_order_acquire);
    if (key == 0) return 0;
  }
  return 0;
}

MEMWARD_TEXT void InsertFrameRule(const FrameRuleTable& table, uintptr_t return_address,
                                  uint64_t packed_rule) {
  if (return_address == 0) return;
  uint64_t home = FrameRuleHome(table, return_address);
  for (uint64_t i = 0; i < kFrameRuleProbes; ++i) {
    FrameRuleEntry& entry = table.entries[home + i];
    uint64_t key = entry.key.load(std::memory_order_acquire);
    if (key == 0) {
      if (entry.key.compare_exchange_strong(key, return_address, std::memory_order_acq_rel)) {
        entry.rule.store(packed_rule, std::memory_order_release);
        g_entry_count.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      // Another thread took the entry, and `key` now contains its address.
    }
    if (key == return_address) {
      // Both threads computed the same rule from the same CFI.
      entry.rule.store(packed_rule, std::memory_order_release);
      return;
    }
  }
  g_not_inserted.fetch_add(1, std::memory_order_relaxed);
}

MEMWARD_TEXT void CountFrameRuleMiss() { g_misses.fetch_add(1, std::memory_order_relaxed); }

FrameRuleCacheCounts ReadFrameRuleCacheCounts() {
  FrameRuleCacheCounts counts;
  counts.mapped_bytes = g_entries.load(std::memory_order_acquire) != nullptr ? g_mapped_bytes : 0;
  counts.entries = g_entry_count.load(std::memory_order_relaxed);
  counts.misses = g_misses.load(std::memory_order_relaxed);
  counts.not_inserted = g_not_inserted.load(std::memory_order_relaxed);
  return counts;
}

}  // namespace memward::accounting
