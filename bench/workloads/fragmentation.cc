// Fragmentation workload: a live set of short-lived and long-lived objects
// whose size distribution changes from phase to phase.
//
// Each round frees one random short-lived object and allocates a replacement
// with the current phase's sizes; every 16th round also replaces one random
// long-lived object. At the start of each phase half the short-lived slots are
// emptied at once, so the heap has holes pinned by the survivors, and the new
// phase's sizes must be placed around them. An allocator that cannot reuse or
// return those holes shows a peak RSS far above the live bytes, which this
// program prints for comparison.
//
// Checks: every object's contents at its free, and the live byte count.
#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <thread>
#include <vector>

#include "workload_support.h"

namespace {

using workload::Fail;

struct Slot {
  void* object = nullptr;
  size_t size = 0;
};

// Sizes of each phase, in order; the run cycles through them.
size_t PhaseSize(size_t phase, workload::Random& random) {
  switch (phase % 4) {
    case 0:
      return random.LogUniform(16, 256);
    case 1:
      return random.LogUniform(256, 4096);
    case 2:
      return random.LogUniform(16, 512);
    default:
      return random.LogUniform(16, 16384);
  }
}

struct Heap {
  uint64_t live_bytes = 0;
  uint64_t peak_live_bytes = 0;
  uint64_t allocations = 0;
  uint64_t next_key = 0;
  uint64_t key_base = 0;

  void Allocate(Slot& slot, size_t size) {
    slot.object = std::malloc(size);
    if (slot.object == nullptr) Fail("malloc(%zu) returned NULL", size);
    slot.size = size;
    workload::FillObject(slot.object, size, key_base | next_key++);
    live_bytes += size;
    peak_live_bytes = std::max(peak_live_bytes, live_bytes);
    ++allocations;
  }

  void Release(Slot& slot) {
    if (slot.object == nullptr) return;
    uint64_t key;
    size_t size;
    if (!workload::VerifyObject(slot.object, &key, &size) || size != slot.size ||
        (key & ~uint64_t{0xFFFFFFFFFF}) != key_base) {
      Fail("an object of %zu bytes is corrupted (header key %#" PRIx64 ", size %zu)", slot.size,
           key, size);
    }
    std::free(slot.object);
    live_bytes -= slot.size;
    slot = Slot{};
  }
};

struct ThreadResult {
  uint64_t peak_live_bytes = 0;
  uint64_t final_live_bytes = 0;
  uint64_t allocations = 0;
};

void Run(size_t thread, uint64_t slots, uint64_t rounds, uint64_t phases, uint64_t seed,
         ThreadResult& result) {
  workload::Random random(seed * 15485863 + thread);
  Heap heap;
  heap.key_base = uint64_t{thread} << 40;
  std::vector<Slot> short_lived(slots);
  std::vector<Slot> long_lived(std::max<uint64_t>(1, slots / 8));

  // Fill both sets with the first phase's sizes, interleaved, so long-lived
  // objects sit among short-lived ones in memory.
  for (size_t i = 0; i < short_lived.size(); ++i) {
    heap.Allocate(short_lived[i], PhaseSize(0, random));
    if (i % 8 == 0 && i / 8 < long_lived.size()) {
      heap.Allocate(long_lived[i / 8], PhaseSize(0, random));
    }
  }

  const uint64_t rounds_per_phase = std::max<uint64_t>(1, rounds / phases);
  size_t phase = 0;
  for (uint64_t round = 0; round < rounds; ++round) {
    if (round > 0 && round % rounds_per_phase == 0) {
      ++phase;
      for (Slot& slot : short_lived) {
        if (random.Next() & 1) heap.Release(slot);
      }
    }
    Slot& slot = short_lived[random.Next() % short_lived.size()];
    heap.Release(slot);
    heap.Allocate(slot, PhaseSize(phase, random));
    if (round % 16 == 0) {
      Slot& old = long_lived[random.Next() % long_lived.size()];
      heap.Release(old);
      heap.Allocate(old, PhaseSize(phase, random));
    }
  }

  result.peak_live_bytes = heap.peak_live_bytes;
  result.final_live_bytes = heap.live_bytes;
  result.allocations = heap.allocations;

  uint64_t counted = 0;
  for (const Slot& slot : short_lived) counted += slot.size;
  for (const Slot& slot : long_lived) counted += slot.size;
  if (counted != heap.live_bytes) {
    Fail("thread %zu counts %" PRIu64 " live bytes but its slots hold %" PRIu64, thread,
         heap.live_bytes, counted);
  }
  for (Slot& slot : short_lived) heap.Release(slot);
  for (Slot& slot : long_lived) heap.Release(slot);
  if (heap.live_bytes != 0) {
    Fail("thread %zu has %" PRIu64 " live bytes after freeing everything", thread,
         heap.live_bytes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  workload::Options options(
      "workload_fragmentation",
      "Interleaved long- and short-lived objects whose sizes change by phase; prints live bytes.");
  options.Add("threads", 1, 2, "threads, each with its own live set");
  options.Add("slots", 20000, 50000, "short-lived objects each thread keeps live");
  options.Add("rounds", 200000, 2000000, "free-and-replace rounds per thread");
  options.Add("phases", 8, 8, "phases, each with a new size distribution");
  options.Add("seed", 1, 1, "seed for sizes and slot choice");
  options.Parse(argc, argv);
  workload::CheckExpectedAllocator(options.program().c_str());

  const size_t threads = options.Get("threads");
  if (threads == 0) Fail("--threads must be at least 1");
  if (options.Get("slots") == 0) Fail("--slots must be at least 1");
  if (options.Get("phases") == 0) Fail("--phases must be at least 1");

  std::vector<ThreadResult> results(threads);
  double start = workload::NowSeconds();
  std::vector<std::thread> workers;
  for (size_t i = 0; i < threads; ++i) {
    workers.emplace_back(Run, i, options.Get("slots"), options.Get("rounds"),
                         options.Get("phases"), options.Get("seed"), std::ref(results[i]));
  }
  for (std::thread& worker : workers) worker.join();
  double seconds = workload::NowSeconds() - start;

  // The threads peak at different moments, so the sum of their peaks is an
  // upper bound of the process's peak live bytes.
  uint64_t peak = 0;
  uint64_t final_live = 0;
  uint64_t allocations = 0;
  for (const ThreadResult& result : results) {
    peak += result.peak_live_bytes;
    final_live += result.final_live_bytes;
    allocations += result.allocations;
  }
  workload::PrintResult(options,
                        "allocations=" + std::to_string(allocations) +
                            " peak_live_bytes=" + std::to_string(peak) +
                            " final_live_bytes=" + std::to_string(final_live),
                        seconds);
  return 0;
}
