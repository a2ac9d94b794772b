// The table of sampled allocations and of the call sites they came from.
//
// The sampler (accounting/sampler.h) records one sample for an allocation that
// crossed its byte countdown. A sample names its call site: the stack of up to
// kMaxSampleFrames return addresses, innermost first. Each distinct stack is
// stored once, in the site table, which also keeps cumulative totals of every
// sample ever taken at that site (pprof's alloc_objects and alloc_space), so
// those totals survive the free of the samples themselves.
//
// Both tables live in one block of memward's own arena, allocated outside
// malloc when sampling starts, never sampled and never charged to a user
// tenant. Their capacity comes from the sample_max_entries and
// sample_max_bytes settings and never grows: when either table is full, a new
// sample is dropped and counted in SamplerStats::samples_dropped.
//
// Concurrency: samples are added and removed inside malloc and free on any
// thread without a lock (a lock-free free list of records, a lock-free
// address index and per-record version numbers). The snapshot functions take
// the table's own mutex only against each other, and copy a record only when
// its version is the same before and after the copy.
#ifndef MEMWARD_ACCOUNTING_SAMPLE_TABLE_H_
#define MEMWARD_ACCOUNTING_SAMPLE_TABLE_H_

#include <stddef.h>
#include <stdint.h>

#include <vector>

namespace memward::accounting {

inline constexpr int kMaxSampleFrames = 64;

// One live sampled allocation, as copied out by SnapshotSamples.
struct SampleRecord {
  uint64_t id;  // unique and increasing in the order samples were taken
  uint32_t site;  // index of its call site in SnapshotSiteTotals' `site`
  uintptr_t frames[kMaxSampleFrames];  // return addresses, innermost first
  uint32_t depth;                      // frames in use
  uint64_t requested_bytes;            // the size the program asked for
  uint64_t usable_bytes;               // the size class it got
  int64_t time_ns;                     // CLOCK_MONOTONIC_COARSE, see SampleClockNs
  uint32_t thread_id;                  // gettid() of the allocating thread
  uint32_t tenant;                     // TenantId charged for the block
  // The request open in the allocating scope: its arena slot and generation,
  // both 0 outside a request.
  uint32_t request_slot;
  uint32_t request_generation;
  // Unbiased estimates of what this sample stands for. A sample of s
  // requested bytes at mean interval R stands for s / (1 - exp(-s / R))
  // requested bytes, and that many bytes divided by s objects.
  double weight_bytes;
  double weight_objects;
  // True when the request named above has ended while the block is live:
  // the block escaped its request (a cache entry, or a leak).
  bool escaped;
};

// One call site with the totals of every sample taken there since sampling
// started, including the samples already freed.
struct SiteTotals {
  uint32_t site;
  uintptr_t frames[kMaxSampleFrames];
  uint32_t depth;
  uint64_t samples;             // samples taken at the site
  double alloc_weight_bytes;    // sum of their weight_bytes
  double alloc_weight_objects;  // sum of their weight_objects
};

// Copies every live sample into `out` (cleared first) and returns the count.
// Called on the warden thread or a test thread, never inside malloc.
size_t SnapshotSamples(std::vector<SampleRecord>* out);

// Copies every call site with at least one sample into `out` (cleared first)
// and returns the count. Same callers as SnapshotSamples.
size_t SnapshotSiteTotals(std::vector<SiteTotals>* out);

// Returns the current time on the clock that SampleRecord::time_ns uses.
int64_t SampleClockNs();

struct SamplerStats {
  uint64_t samples_taken;    // since start, including freed ones
  uint64_t samples_dropped;  // tables full, or sampling not yet set up
  uint64_t live_samples;
  uint64_t table_bytes;  // the tables' block in memward's arena
  uint64_t table_resident_bytes;  // of those, in resident pages
  // Bytes the unwinders have mapped for their caches (the frame rule table,
  // and libunwind's, accounting/unwinder_memory.h), and libunwind's mappings
  // rejected at the sample_unwinder_max_bytes bound.
  uint64_t unwinder_cache_bytes;
  uint64_t unwinder_rejected_mappings;
  // Stacks the cached unwinder could not walk to the end, and of those the
  // ones cut short because libunwind was not loaded yet.
  uint64_t unwinder_fallbacks;
  uint64_t truncated_stacks;
  // The cached unwinder's frame rule table (accounting/frame_rule_cache.h):
  // the entries filled and the home entries of the table in use, the
  // return addresses looked up in the CFI, and the rules it had no room for.
  uint64_t rule_entries;
  uint64_t rule_home_entries;
  uint64_t rule_misses;
  uint64_t rules_not_inserted;
  int64_t interval_bytes;  // mean sampling interval; 0 when sampling is off
};

SamplerStats GetSamplerStats();

// Creates the table for `max_entries` samples within `max_bytes` of
// memward's arena. Returns false when that memory is not available. Called
// once, outside malloc; later calls return whether the table exists.
bool CreateSampleTable(int64_t max_entries, int64_t max_bytes);
bool SampleTableReady();

// The sampler's side of the table, called inside malloc and free: none of
// these allocates, locks or waits for another thread.

inline constexpr uint32_t kNoSample = UINT32_MAX;
inline constexpr uint32_t kNoSite = UINT32_MAX;

// The facts a sample records about its allocation, besides the stack.
struct SampleFields {
  uint64_t requested_bytes;
  uint64_t usable_bytes;
  uint32_t thread_id;
  uint32_t tenant;
  uint32_t arena_slot;  // the scope's arena slot; request_slot when it is a request
  uint32_t request_slot;
  uint32_t request_generation;
  uint32_t unused_bytes;  // room kept for a shared-arena header
  double weight_bytes;
  double weight_objects;
};

// Returns a free record index, or kNoSample when the table is full.
uint32_t ReserveSample();
// Puts back a reserved record that was not published.
void ReleaseSample(uint32_t index);
// Returns the index of the site with this stack, adding it, or kNoSite when
// the site table is full. Adds the sample's weights to the site's totals.
// `hash` is HashStack(frames, depth) (stack_hash.h), which CaptureStack
// returns with the frames.
uint32_t AddToSite(const uintptr_t* frames, uint32_t depth, uint64_t hash, double weight_bytes,
                   double weight_objects);
// Fills a reserved record and makes `pointer` findable by RemoveSample.
// `site` may be kNoSite, for a sample whose stack found no room.
void PublishSample(uint32_t index, const void* pointer, uint32_t site,
                   const SampleFields& fields);
// Counts a sample that could not be recorded.
void CountDroppedSample();

// Removes the sample of `pointer`, storing whom its block is charged to.
// Returns false when `pointer` has no sample.
struct SampleOwner {
  uint32_t tenant;
  uint32_t arena_slot;
  uint32_t unused_bytes;
};
bool RemoveSample(const void* pointer, SampleOwner* owner);
// Looks the sample of `pointer` up without removing it.
bool FindSample(const void* pointer, SampleOwner* owner);

struct SampleTableCounts {
  uint64_t samples_taken = 0;
  uint64_t samples_dropped = 0;
  uint64_t live_samples = 0;
  uint64_t table_bytes = 0;     // allocated from memward's arena
  uint64_t resident_bytes = 0;  // of those, in resident pages
};
SampleTableCounts ReadSampleTableCounts();

// Holds the snapshot lock across fork, so a child never inherits it taken.
void LockSampleTableForFork();
void UnlockSampleTableAfterFork();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_SAMPLE_TABLE_H_
