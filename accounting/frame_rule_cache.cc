// The frame rule tables' creation, their slow probes and their inserts.
#include "accounting/frame_rule_cache.h"

#include <sys/mman.h>

#include "alloc/macros.h"

namespace memward::accounting {
namespace {

// Tables of kFrameRuleFirstHomeEntries << 0 to << 5 home entries.
constexpr int kTables = 6;
static_assert((kFrameRuleFirstHomeEntries << (kTables - 1)) == kFrameRuleHomeEntries);

// Entries of table `index`: its home entries and the probe tail.
constexpr uint64_t EntriesOf(int index) {
  return (kFrameRuleFirstHomeEntries << index) + kFrameRuleProbes;
}

// Entries of all tables. Each table has its keys, then its rules.
constexpr uint64_t TotalEntries() {
  uint64_t total = 0;
  for (int index = 0; index < kTables; ++index) total += EntriesOf(index);
  return total;
}

// Written once by CreateFrameRuleCache outside malloc, before g_in_use is
// published; read inside malloc.
constinit FrameRuleTable g_tables[kTables] = {};

// The index of the table in use, or -1 before the mapping exists. It only
// grows. A walk or an insert that still uses an earlier table finds its
// keys paired with their own rules, since that table is never emptied for
// a move.
constinit std::atomic<int> g_in_use{-1};

// Inserts and the emptying after an unload exclude each other without a
// lock. This is Dekker's protocol, so both sides use sequentially
// consistent operations. An insert counts itself in g_inserts, then gives
// up if g_emptying is set. The emptying sets g_emptying, then gives up if
// an insert is counted, and a later miss tries again. So no insert stores
// a key or a rule while a table is emptied. Neither side waits, because
// inside malloc the other side may be the same thread, interrupted by a
// signal handler.
constinit std::atomic<uint32_t> g_inserts{0};
constinit std::atomic<bool> g_emptying{false};

constinit std::atomic<void (*)()> g_insert_hook{nullptr};  // SetFrameRuleInsertHookForTesting

constinit std::atomic<uint64_t> g_entry_count{0};  // filled in the table in use
constinit std::atomic<uint64_t> g_unloads{0};
constinit std::atomic<uint64_t> g_misses{0};
constinit std::atomic<uint64_t> g_not_inserted{0};

}  // namespace

uint64_t FrameRuleCacheMappingBytes() {
  return (TotalEntries() * kFrameRuleEntryBytes + 4095) & ~uint64_t{4095};
}

bool CreateFrameRuleCache(uint64_t max_bytes) {
  if (g_in_use.load(std::memory_order_acquire) >= 0) return true;
  uint64_t bytes = FrameRuleCacheMappingBytes();
  if (bytes > max_bytes) return false;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return false;
  auto* next = static_cast<std::atomic<uint64_t>*>(memory);
  for (int index = 0; index < kTables; ++index) {
    g_tables[index].keys = next;
    g_tables[index].rules = next + EntriesOf(index);
    g_tables[index].home_mask = (kFrameRuleFirstHomeEntries << index) - 1;
    next += 2 * EntriesOf(index);
  }
  g_in_use.store(0, std::memory_order_release);
  return true;
}

MEMWARD_TEXT FrameRuleTable CurrentFrameRuleTable() {
  int index = g_in_use.load(std::memory_order_acquire);
  return index >= 0 ? g_tables[index] : FrameRuleTable{};
}

namespace {

// Moves from table `index` to the next one, unless another thread has moved
// past it already. Returns false only when `index` is the largest table.
MEMWARD_TEXT bool MoveToNextTable(int index) {
  if (index + 1 >= kTables) return false;
  if (g_in_use.compare_exchange_strong(index, index + 1, std::memory_order_acq_rel)) {
    g_entry_count.store(0, std::memory_order_relaxed);
  }
  return true;
}

// Fills an entry of `table` for `return_address`. Returns false when all of
// its probed entries contain other addresses.
MEMWARD_TEXT bool TryInsert(FrameRuleTable table, uintptr_t return_address,
                            uint64_t packed_rule) {
  uint64_t home = FrameRuleHome(return_address, table.home_mask);
  for (uint64_t i = home; i < home + kFrameRuleProbes; ++i) {
    uint64_t key = table.keys[i].load(std::memory_order_acquire);
    if (key == 0) {
      if (table.keys[i].compare_exchange_strong(key, return_address, std::memory_order_acq_rel)) {
        void (*hook)() = g_insert_hook.load(std::memory_order_relaxed);
        if (MEMWARD_UNLIKELY(hook != nullptr)) hook();
        table.rules[i].store(packed_rule, std::memory_order_release);
        g_entry_count.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
      // Another thread took the entry, and `key` now contains its address.
    }
    if (key == return_address) {
      // Both threads computed the same rule from the same CFI.
      table.rules[i].store(packed_rule, std::memory_order_release);
      return true;
    }
  }
  return false;
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

namespace {

// Caches `packed_rule` for `return_address`. The caller (InsertFrameRule)
// has checked that no emptying runs.
MEMWARD_TEXT void InsertWhileNotEmptying(uintptr_t return_address, uint64_t packed_rule) {
  int index = g_in_use.load(std::memory_order_acquire);
  if (index < 0) return;
  uint64_t quarter = (kFrameRuleFirstHomeEntries << index) / 4;
  if (g_entry_count.load(std::memory_order_relaxed) >= quarter && MoveToNextTable(index)) {
    index = g_in_use.load(std::memory_order_acquire);
  }
  while (!TryInsert(g_tables[index], return_address, packed_rule)) {
    if (!MoveToNextTable(index)) {
      g_not_inserted.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    index = g_in_use.load(std::memory_order_acquire);
  }
}

// Empties the table in use. REQUIRES: g_emptying set by the caller while
// no insert was counted.
MEMWARD_TEXT void EmptyTableInUse() {
  int index = g_in_use.load(std::memory_order_acquire);
  if (index < 0) return;
  // Each rule goes before its key, so a walk that still finds the key loads
  // 0 (a miss) or the old rule, and its second read of the key rejects a
  // rule that a new address stored meanwhile.
  FrameRuleTable table = g_tables[index];
  for (uint64_t i = 0; i < EntriesOf(index); ++i) {
    table.rules[i].store(0, std::memory_order_release);
    table.keys[i].store(0, std::memory_order_release);
  }
  g_entry_count.store(0, std::memory_order_relaxed);
}

}  // namespace

MEMWARD_TEXT void InsertFrameRule(uintptr_t return_address, uint64_t packed_rule) {
  if (return_address == 0) return;
  g_inserts.fetch_add(1, std::memory_order_seq_cst);
  if (!g_emptying.load(std::memory_order_seq_cst)) {
    InsertWhileNotEmptying(return_address, packed_rule);
  }
  g_inserts.fetch_sub(1, std::memory_order_release);
}

MEMWARD_TEXT void CountFrameRuleMiss() { g_misses.fetch_add(1, std::memory_order_relaxed); }

MEMWARD_TEXT bool FrameRulesWereDropped() {
  return g_not_inserted.load(std::memory_order_relaxed) != 0;
}

MEMWARD_TEXT void DropFrameRulesAfterUnload(uint64_t unloads) {
  uint64_t seen = g_unloads.load(std::memory_order_acquire);
  if (seen == unloads) return;
  bool emptying = false;
  if (!g_emptying.compare_exchange_strong(emptying, true, std::memory_order_seq_cst)) return;
  // Only the call that empties the table records the new count, so a miss
  // that finds an insert under way leaves the emptying to a later miss.
  if (g_inserts.load(std::memory_order_seq_cst) == 0 &&
      g_unloads.compare_exchange_strong(seen, unloads, std::memory_order_acq_rel)) {
    EmptyTableInUse();
  }
  g_emptying.store(false, std::memory_order_release);
}

void SetFrameRuleInsertHookForTesting(void (*hook)()) {
  g_insert_hook.store(hook, std::memory_order_relaxed);
}

FrameRuleCacheCounts ReadFrameRuleCacheCounts() {
  FrameRuleCacheCounts counts;
  int index = g_in_use.load(std::memory_order_acquire);
  counts.mapped_bytes = index >= 0 ? FrameRuleCacheMappingBytes() : 0;
  counts.entries = g_entry_count.load(std::memory_order_relaxed);
  counts.home_entries = index >= 0 ? kFrameRuleFirstHomeEntries << index : 0;
  counts.misses = g_misses.load(std::memory_order_relaxed);
  counts.not_inserted = g_not_inserted.load(std::memory_order_relaxed);
  return counts;
}

}  // namespace memward::accounting
