// The process's cache of frame rules, keyed by return address: an
// open-addressed table in its own mapping. Reads take no lock, and a miss
// fills the entry with one compare-and-swap. Entries are evicted only all at
// once, after a library is unloaded, so a full table leaves new addresses
// uncached (they are looked up on every walk).
//
// The mapping contains six tables, of 256 to 8,192 home entries, and one is
// in use. An insert moves to the next, empty, table in two cases. The first
// is when a quarter of the current one's home entries are filled, so that
// most addresses are found at their home. The second is when all the probed
// entries of an address are taken, since call sites aligned alike share
// their low bits. A small program's walks thus touch two pages. With one
// table of 8,192 home entries, the few dozen addresses of
// workload_thread_churn, spread by their low bits, touched 27 of its 33
// pages. Tables are never emptied for a move, and inserts and the emptying
// after an unload exclude each other (frame_rule_cache.cc).
#ifndef MEMWARD_ACCOUNTING_FRAME_RULE_CACHE_H_
#define MEMWARD_ACCOUNTING_FRAME_RULE_CACHE_H_

#include <stdint.h>

#include <atomic>

namespace memward::accounting {

// The table as one walk reads it: an entry is keys[i] and rules[i]. Between
// two emptyings (DropFrameRulesAfterUnload), a key goes from 0 to a return
// address once, and its rule from 0 to the packed rule (frame_rule.h) once.
// A reader that finds the key thus loads either the final rule or 0, a
// miss. Keys and rules are separate arrays so that an index addresses both
// with an 8-byte scale, which keeps the walk's chain of dependent
// instructions short.
struct FrameRuleTable {
  std::atomic<uint64_t>* keys = nullptr;  // nullptr when no table was mapped
  std::atomic<uint64_t>* rules = nullptr;
  uint64_t home_mask = 0;  // home entries of this table, minus 1
};

// Bytes of one entry, its key and its rule.
constexpr uint64_t kFrameRuleEntryBytes = 16;

// Home entries of the largest table and of the first.
constexpr uint32_t kFrameRuleHomeBits = 13;
constexpr uint64_t kFrameRuleHomeEntries = uint64_t{1} << kFrameRuleHomeBits;
constexpr uint64_t kFrameRuleFirstHomeEntries = 256;

// Entries tried from an address's home entry on. Each table has this many
// entries past its last home entry, so a probe never wraps.
constexpr uint64_t kFrameRuleProbes = 8;

// Maps the tables (about 253 KiB, resident as they fill) once per process,
// unless that would pass `max_bytes`. Returns whether a table exists.
// Called outside malloc.
bool CreateFrameRuleCache(uint64_t max_bytes);

// Bytes that CreateFrameRuleCache maps, whole pages.
uint64_t FrameRuleCacheMappingBytes();

FrameRuleTable CurrentFrameRuleTable();

// The home entry of `return_address`: its low bits, one operation, since
// the hash lies on the walk's chain of dependent instructions. Mixing in
// the bits above (two more operations) cost about 10 % of a 64-frame
// capture in sampler_micro. Addresses that share their low bits go to the
// probed entries after the home.
inline uint64_t FrameRuleHome(uintptr_t return_address, uint64_t home_mask) {
  return static_cast<uint64_t>(return_address) & home_mask;
}

// Probes the entries after the home entry; returns the packed rule or 0.
// Reads the table itself, so that the walk's loop passes no table.
uint64_t FindFrameRuleAfterHome(uintptr_t return_address);

// Returns the packed rule of `return_address`, or 0 when it is not cached
// (or is being filled by another thread). The table must exist.
// The key is read again after the rule: DropFrameRulesAfterUnload may have
// emptied the entry, and another address taken it, in between.
inline uint64_t FindFrameRule(FrameRuleTable table, uintptr_t return_address) {
  uint64_t home = FrameRuleHome(return_address, table.home_mask);
  if (table.keys[home].load(std::memory_order_acquire) == return_address) {
    uint64_t rule = table.rules[home].load(std::memory_order_acquire);
    if (table.keys[home].load(std::memory_order_relaxed) == return_address) return rule;
    return 0;
  }
  return FindFrameRuleAfterHome(return_address);
}

// Caches `packed_rule` for `return_address`, unless all of its probed
// entries contain other addresses in the largest table. Moves to the next
// table first when a quarter of the current one's home entries are filled,
// and again when the probed entries are all taken.
void InsertFrameRule(uintptr_t return_address, uint64_t packed_rule);

struct FrameRuleCacheCounts {
  uint64_t mapped_bytes = 0;  // the table's mapping, whole pages
  uint64_t entries = 0;       // entries filled in the table in use
  uint64_t home_entries = 0;  // home entries of the table in use
  uint64_t misses = 0;        // addresses looked up in the CFI
  uint64_t not_inserted = 0;  // rules dropped because the probed entries were taken
};

// Counts a lookup in the CFI; called on each miss.
void CountFrameRuleMiss();

// Returns whether a rule was ever dropped for want of room. The addresses
// of such a process keep missing, so its lookups read the tables through
// their mapping, which is faster than reading them from the files once the
// pages are resident.
bool FrameRulesWereDropped();

// Empties the table when `unloads` (the loader's count of unloaded objects)
// differs from the count at the last call, since an object loaded later at
// the same addresses has other rules. Called on a miss and by the loader
// check at the start of a capture (cached_unwinder.h), outside the
// loader's lock. A walk may still use an old rule that it read before the
// table was emptied. While an insert is under way the table is left as it
// is, and a later miss empties it. Inserts made during an emptying are
// dropped (frame_rule_cache.cc).
void DropFrameRulesAfterUnload(uint64_t unloads);

FrameRuleCacheCounts ReadFrameRuleCacheCounts();

// Test seam: `hook`, unless nullptr (the default), runs inside each insert
// after it has claimed an entry's key and before it stores the rule, the
// point where an emptying must not run. Set only by tests, outside malloc.
void SetFrameRuleInsertHookForTesting(void (*hook)());

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_FRAME_RULE_CACHE_H_
