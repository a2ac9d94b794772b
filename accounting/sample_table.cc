// The sample table: records of live samples, the address index that free uses
// to find them, and the site table with cumulative totals.
//
// Layout of the one block, allocated zeroed from memward's arena so that only
// the pages in use become resident (all-zero is every structure's initial
// state, so nothing is written up front):
//   records[capacity]        live samples, each with a version number
//   free_next[capacity]      the lock-free free list of reused records
//   index[index_capacity]    pointer -> record, open addressing
//   site_index[...]          stack hash -> site number + 1, open addressing
//   sites[capacity]          stacks and totals, handed out in order
//
// Both indexes probe a short run of slots among their first kHotSlots before
// they probe linearly from a home slot anywhere in the index (ProbeSlot).
// A process with a few hundred live samples and sites then touches a few
// pages of each index instead of one random page per entry. Slots never
// return to 0, so a lookup that meets a 0 slot on the common sequence has
// passed every slot an insertion could have taken.
//
// Record life: ReserveSample pops it from the free list; PublishSample fills
// it and then inserts the pointer into the index; RemoveSample takes the
// pointer out of the index, marks the record dead and pushes it back. The
// pointer is unique while its block is live, so at most one thread ever
// publishes or removes a given pointer, and the index needs no lock.
#include "accounting/sample_table.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <new>

#include "alloc/arena_registry.h"
#include "alloc/routing.h"
#include "base/mutex_lock.h"
#include "base/resident.h"

namespace memward::accounting {
namespace {

struct Record {
  // Odd while the record is being written or removed; a snapshot copies a
  // record only when it reads the same even version before and after.
  std::atomic<uint64_t> version{0};
  bool live = false;
  uint64_t id = 0;
  uintptr_t pointer = 0;
  uint32_t site = 0;
  int64_t time_ns = 0;
  SampleFields fields = {};
};

struct IndexEntry {
  // 0 for never used, kTombstone for removed, else the sampled pointer.
  std::atomic<uintptr_t> key{0};
  std::atomic<uint32_t> record{0};
};
constexpr uintptr_t kTombstone = 1;

struct Site {
  std::atomic<bool> ready{false};  // set (release) once the stack is written
  uint32_t depth = 0;
  uint64_t hash = 0;
  std::atomic<uint64_t> samples{0};
  std::atomic<double> weight_bytes{0};
  std::atomic<double> weight_objects{0};
  uintptr_t frames[kMaxSampleFrames] = {};
};

constexpr uint32_t kEndOfList = UINT32_MAX;

// Set once by CreateSampleTable before `g_ready` (release); read-only after.
struct Table {
  Record* records = nullptr;
  std::atomic<uint32_t>* free_next = nullptr;
  IndexEntry* index = nullptr;
  std::atomic<uint32_t>* site_index = nullptr;
  Site* sites = nullptr;
  uint32_t capacity = 0;
  uint64_t index_mask = 0;
  uint64_t site_index_mask = 0;
  void* block = nullptr;
  size_t bytes = 0;
};
constinit Table g_table;
constinit std::atomic<bool> g_ready{false};

// The free list's head: record index in the low 32 bits, a tag that grows
// at every change in the high 32 bits, so a stale compare-exchange fails.
constinit std::atomic<uint64_t> g_free_head{kEndOfList};
// Records never used yet are handed out in order, after the free list.
constinit std::atomic<uint32_t> g_unused_records{0};

// The next sample's id; ids start at 1, so it is also the number of samples
// taken plus one.
constinit std::atomic<uint64_t> g_next_id{1};
constinit std::atomic<uint64_t> g_samples_dropped{0};
// Samples removed by free. The live samples are the samples taken minus
// these, so that publishing a sample needs no counter of its own.
constinit std::atomic<uint64_t> g_removed_samples{0};
// Site numbers handed out; at most `capacity`.
constinit std::atomic<uint32_t> g_site_count{0};

// Serialises CreateSampleTable and the snapshots; never taken inside malloc.
constinit pthread_mutex_t g_snapshot_lock = PTHREAD_MUTEX_INITIALIZER;


uint64_t RoundUpToPowerOfTwo(uint64_t value) {
  uint64_t result = 1;
  while (result < value) result <<= 1;
  return result;
}

// The hot part of each index: 16 KiB of the address index, 4 KiB of the
// site index.
constexpr uint64_t kHotSlots = 1024;
constexpr uint64_t kHotProbes = 8;

// Returns the slot that probe number `probe` for `hash` visits in an index
// of `mask` + 1 slots: kHotProbes slots among the first kHotSlots, then
// linear probing over the whole index from a second home slot. The first
// kHotProbes + mask + 1 probes visit every slot.
uint64_t ProbeSlot(uint64_t hash, uint64_t probe, uint64_t mask) {
  if (probe < kHotProbes) return (hash + probe) & (mask < kHotSlots ? mask : kHotSlots - 1);
  return ((hash >> 32) + probe - kHotProbes) & mask;
}

uint64_t ProbeLimit(uint64_t mask) { return kHotProbes + mask + 1; }

uint64_t HashPointer(uintptr_t pointer) {
  uint64_t hash = pointer * 0x9e3779b97f4a7c15ull;
  return hash ^ (hash >> 29);
}

size_t TableBytes(uint64_t capacity, uint64_t* index_capacity, uint64_t* site_index_capacity) {
  *index_capacity = RoundUpToPowerOfTwo(capacity * 2);
  *site_index_capacity = RoundUpToPowerOfTwo(capacity * 2);
  return capacity * (sizeof(Record) + sizeof(std::atomic<uint32_t>) + sizeof(Site)) +
         *index_capacity * sizeof(IndexEntry) + *site_index_capacity * sizeof(uint32_t);
}

// Returns the next `count` objects of type T at `cursor`, which the zeroed
// block already holds in their initial state, and advances the cursor.
template <typename T>
T* Carve(char*& cursor, uint64_t count) {
  static_assert(alignof(T) <= 16);
  T* array = reinterpret_cast<T*>(cursor);
  cursor += (count * sizeof(T) + 15) & ~uint64_t{15};
  return array;
}

}  // namespace

bool CreateSampleTable(int64_t max_entries, int64_t max_bytes) {
  base::MutexLock lock(&g_snapshot_lock);
  if (g_ready.load(std::memory_order_acquire)) return true;
  uint64_t capacity = static_cast<uint64_t>(max_entries);
  uint64_t index_capacity = 0;
  uint64_t site_index_capacity = 0;
  size_t bytes = TableBytes(capacity, &index_capacity, &site_index_capacity);
  while (bytes > static_cast<uint64_t>(max_bytes) && capacity > 16) {
    capacity = capacity * 3 / 4;
    bytes = TableBytes(capacity, &index_capacity, &site_index_capacity);
  }
  bytes += 5 * 16;  // Carve's rounding of each array
  char* block = static_cast<char*>(alloc::AllocateMemwardBlock(bytes, /*zero=*/true));
  if (block == nullptr) return false;

  char* cursor = block;
  g_table.records = Carve<Record>(cursor, capacity);
  g_table.free_next = Carve<std::atomic<uint32_t>>(cursor, capacity);
  g_table.index = Carve<IndexEntry>(cursor, index_capacity);
  g_table.site_index = Carve<std::atomic<uint32_t>>(cursor, site_index_capacity);
  g_table.sites = Carve<Site>(cursor, capacity);
  g_table.capacity = static_cast<uint32_t>(capacity);
  g_table.index_mask = index_capacity - 1;
  g_table.site_index_mask = site_index_capacity - 1;
  g_table.block = block;
  g_table.bytes = bytes;
  g_ready.store(true, std::memory_order_release);
  return true;
}

bool SampleTableReady() { return g_ready.load(std::memory_order_acquire); }

uint32_t ReserveSample() {
  uint64_t head = g_free_head.load(std::memory_order_acquire);
  for (;;) {
    uint32_t index = static_cast<uint32_t>(head);
    if (index == kEndOfList) break;
    uint32_t next = g_table.free_next[index].load(std::memory_order_relaxed);
    uint64_t tag = (head >> 32) + 1;
    if (g_free_head.compare_exchange_weak(head, (tag << 32) | next, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      return index;
    }
  }
  uint32_t unused = g_unused_records.load(std::memory_order_relaxed);
  while (unused < g_table.capacity) {
    if (g_unused_records.compare_exchange_weak(unused, unused + 1, std::memory_order_relaxed)) {
      return unused;
    }
  }
  return kNoSample;
}

void ReleaseSample(uint32_t index) {
  uint64_t head = g_free_head.load(std::memory_order_relaxed);
  for (;;) {
    g_table.free_next[index].store(static_cast<uint32_t>(head), std::memory_order_relaxed);
    uint64_t tag = (head >> 32) + 1;
    if (g_free_head.compare_exchange_weak(head, (tag << 32) | index, std::memory_order_release,
                                          std::memory_order_relaxed)) {
      return;
    }
  }
}

namespace {

bool SameStack(const Site& site, uint64_t hash, const uintptr_t* frames, uint32_t depth) {
  return site.hash == hash && site.depth == depth &&
         memcmp(site.frames, frames, depth * sizeof(uintptr_t)) == 0;
}

// Takes a new site number and writes the stack into it; kNoSite when full.
uint32_t NewSite(uint64_t hash, const uintptr_t* frames, uint32_t depth) {
  uint32_t number = g_site_count.fetch_add(1, std::memory_order_relaxed);
  if (number >= g_table.capacity) {
    g_site_count.store(g_table.capacity, std::memory_order_relaxed);
    return kNoSite;
  }
  Site& site = g_table.sites[number];
  site.hash = hash;
  site.depth = depth;
  memcpy(site.frames, frames, depth * sizeof(uintptr_t));
  site.ready.store(true, std::memory_order_release);
  return number;
}

void AddWeights(Site& site, double weight_bytes, double weight_objects) {
  site.samples.fetch_add(1, std::memory_order_relaxed);
  site.weight_bytes.fetch_add(weight_bytes, std::memory_order_relaxed);
  site.weight_objects.fetch_add(weight_objects, std::memory_order_relaxed);
}

}  // namespace

uint32_t AddToSite(const uintptr_t* frames, uint32_t depth, uint64_t hash, double weight_bytes,
                   double weight_objects) {
  uint32_t created = kNoSite;
  const uint64_t mask = g_table.site_index_mask;
  for (uint64_t probe = 0; probe < ProbeLimit(mask); probe++) {
    std::atomic<uint32_t>& entry = g_table.site_index[ProbeSlot(hash, probe, mask)];
    uint32_t current = entry.load(std::memory_order_acquire);
    if (current == 0) {
      if (created == kNoSite) created = NewSite(hash, frames, depth);
      if (created == kNoSite) return kNoSite;
      if (entry.compare_exchange_strong(current, created + 1, std::memory_order_acq_rel)) {
        AddWeights(g_table.sites[created], weight_bytes, weight_objects);
        return created;
      }
    }
    // A site another thread has not finished writing is passed over rather
    // than waited for: the wait could last forever in a child forked during
    // the write. The same stack may then get two sites; exporters merge by
    // frames.
    Site& site = g_table.sites[current - 1];
    if (!site.ready.load(std::memory_order_acquire)) continue;
    if (!SameStack(site, hash, frames, depth)) continue;
    AddWeights(site, weight_bytes, weight_objects);
    return current - 1;
  }
  return kNoSite;
}

void PublishSample(uint32_t index, const void* pointer, uint32_t site,
                   const SampleFields& fields) {
  Record& record = g_table.records[index];
  uint64_t version = record.version.load(std::memory_order_relaxed);
  record.version.store(version + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  record.id = g_next_id.fetch_add(1, std::memory_order_relaxed);
  record.pointer = reinterpret_cast<uintptr_t>(pointer);
  record.site = site;
  record.time_ns = SampleClockNs();
  record.fields = fields;
  record.live = true;
  record.version.store(version + 2, std::memory_order_release);

  // Probing always finds a free entry: the index has twice as many entries
  // as there are records, and each live record has exactly one.
  uintptr_t key = reinterpret_cast<uintptr_t>(pointer);
  const uint64_t hash = HashPointer(key);
  for (uint64_t probe = 0;; probe++) {
    IndexEntry& entry = g_table.index[ProbeSlot(hash, probe, g_table.index_mask)];
    uintptr_t current = entry.key.load(std::memory_order_relaxed);
    if (current != 0 && current != kTombstone) continue;
    // The key goes in first: no thread looks this key up before the
    // program has the pointer, which happens after this function returns.
    if (!entry.key.compare_exchange_strong(current, key, std::memory_order_relaxed)) continue;
    entry.record.store(index, std::memory_order_release);
    break;
  }
}

void CountDroppedSample() { g_samples_dropped.fetch_add(1, std::memory_order_relaxed); }

namespace {

// Returns the index entry of `pointer`, or nullptr.
IndexEntry* FindEntry(const void* pointer) {
  if (!g_ready.load(std::memory_order_acquire)) return nullptr;
  uintptr_t key = reinterpret_cast<uintptr_t>(pointer);
  const uint64_t hash = HashPointer(key);
  const uint64_t mask = g_table.index_mask;
  for (uint64_t probe = 0; probe < ProbeLimit(mask); probe++) {
    IndexEntry& entry = g_table.index[ProbeSlot(hash, probe, mask)];
    uintptr_t current = entry.key.load(std::memory_order_acquire);
    if (current == 0) return nullptr;
    if (current == key) return &entry;
  }
  return nullptr;
}

void ReadOwner(const Record& record, SampleOwner* owner) {
  owner->tenant = record.fields.tenant;
  owner->arena_slot = record.fields.arena_slot;
  owner->unused_bytes = record.fields.unused_bytes;
}

}  // namespace

bool FindSample(const void* pointer, SampleOwner* owner) {
  IndexEntry* entry = FindEntry(pointer);
  if (entry == nullptr) return false;
  ReadOwner(g_table.records[entry->record.load(std::memory_order_acquire)], owner);
  return true;
}

bool RemoveSample(const void* pointer, SampleOwner* owner) {
  IndexEntry* entry = FindEntry(pointer);
  if (entry == nullptr) return false;
  uint32_t index = entry->record.load(std::memory_order_acquire);
  Record& record = g_table.records[index];
  ReadOwner(record, owner);
  uint64_t version = record.version.load(std::memory_order_relaxed);
  record.version.store(version + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  record.live = false;
  record.version.store(version + 2, std::memory_order_release);
  entry->key.store(kTombstone, std::memory_order_release);
  // Release: a reader that sees this removal also sees the sample's id
  // taken, since publishing happened before the program had the pointer.
  g_removed_samples.fetch_add(1, std::memory_order_release);
  ReleaseSample(index);
  return true;
}

// The coarse clock is read from the vDSO without the TSC: about 5 ns
// against 22 ns for CLOCK_MONOTONIC (CPU time, measured on the 2-vCPU AMD
// EPYC virtual machine that docs/sampling-benchmarks.md describes). Its
// resolution, one kernel tick (1 to 10 ms), is enough for ages in seconds.
int64_t SampleClockNs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

namespace {

// Returns whether the request that `fields` names has ended: its arena
// moved on to a later request, or is no longer open.
bool RequestEnded(const SampleFields& fields) {
  if (fields.request_slot == 0) return false;
  const alloc::ArenaSlot& slot = alloc::SlotAt(fields.request_slot);
  return slot.generation.load(std::memory_order_acquire) != fields.request_generation ||
         slot.state.load(std::memory_order_acquire) != alloc::RequestState::kOpen;
}

void CopyFrames(uint32_t site_index, SampleRecord* out) {
  out->depth = 0;
  if (site_index == kNoSite) return;
  const Site& site = g_table.sites[site_index];
  out->depth = site.depth;
  memcpy(out->frames, site.frames, site.depth * sizeof(uintptr_t));
}

}  // namespace

size_t SnapshotSamples(std::vector<SampleRecord>* out) {
  out->clear();
  if (!g_ready.load(std::memory_order_acquire)) return 0;
  base::MutexLock lock(&g_snapshot_lock);
  uint32_t used = g_unused_records.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < used && i < g_table.capacity; i++) {
    const Record& record = g_table.records[i];
    uint64_t before = record.version.load(std::memory_order_acquire);
    if ((before & 1) != 0 || !record.live) continue;
    uint64_t id = record.id;
    uint32_t site = record.site;
    int64_t time_ns = record.time_ns;
    SampleFields fields = record.fields;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (record.version.load(std::memory_order_relaxed) != before) continue;

    SampleRecord sample = {};
    sample.id = id;
    sample.site = site;
    CopyFrames(site, &sample);
    sample.requested_bytes = fields.requested_bytes;
    sample.usable_bytes = fields.usable_bytes;
    sample.time_ns = time_ns;
    sample.thread_id = fields.thread_id;
    sample.tenant = fields.tenant;
    sample.request_slot = fields.request_slot;
    sample.request_generation = fields.request_generation;
    sample.weight_bytes = fields.weight_bytes;
    sample.weight_objects = fields.weight_objects;
    sample.escaped = RequestEnded(fields);
    out->push_back(sample);
  }
  return out->size();
}

size_t SnapshotSiteTotals(std::vector<SiteTotals>* out) {
  out->clear();
  if (!g_ready.load(std::memory_order_acquire)) return 0;
  base::MutexLock lock(&g_snapshot_lock);
  uint32_t sites = g_site_count.load(std::memory_order_relaxed);
  if (sites > g_table.capacity) sites = g_table.capacity;
  for (uint32_t i = 0; i < sites; i++) {
    const Site& site = g_table.sites[i];
    if (!site.ready.load(std::memory_order_acquire)) continue;
    SiteTotals totals = {};
    totals.site = i;
    totals.depth = site.depth;
    memcpy(totals.frames, site.frames, site.depth * sizeof(uintptr_t));
    totals.samples = site.samples.load(std::memory_order_relaxed);
    totals.alloc_weight_bytes = site.weight_bytes.load(std::memory_order_relaxed);
    totals.alloc_weight_objects = site.weight_objects.load(std::memory_order_relaxed);
    if (totals.samples > 0) out->push_back(totals);
  }
  return out->size();
}

SampleTableCounts ReadSampleTableCounts() {
  SampleTableCounts counts;
  // Removals are read first: every sample they count was taken before, so
  // the difference is never negative.
  uint64_t removed = g_removed_samples.load(std::memory_order_acquire);
  counts.samples_taken = g_next_id.load(std::memory_order_relaxed) - 1;
  counts.samples_dropped = g_samples_dropped.load(std::memory_order_relaxed);
  counts.live_samples = counts.samples_taken - removed;
  if (g_ready.load(std::memory_order_acquire)) {
    counts.table_bytes = g_table.bytes;
    counts.resident_bytes = base::ResidentBytes(g_table.block, g_table.bytes);
  }
  return counts;
}

void LockSampleTableForFork() { pthread_mutex_lock(&g_snapshot_lock); }
void UnlockSampleTableAfterFork() { pthread_mutex_unlock(&g_snapshot_lock); }

}  // namespace memward::accounting
