// The cost of one allocation sample, measured on memward's internals (this
// program links memward's objects itself, like tests/unit's sampler test):
//   BM_CaptureStack      the selected unwinder (sample_unwinder, cached by
//                        default) at a stack of about `depth` frames,
//                        memward's frames cut off;
//   BM_CaptureStackLibunwind  the same with libunwind's unw_backtrace;
//   BM_FirstCapturesOfThread  the same for a thread's first captures, which
//                        libunwind steps with unw_step instead;
//   BM_NewThreadCapture  the first capture of a new thread (manual time,
//                        the capture alone): the cached unwinder reads the
//                        stack's bounds from /proc/self/maps;
//   BM_SampleBookkeeping the table's work for one sample: reserve a record,
//                        add to the site's totals, publish, and remove it as
//                        free does (the stack's hash comes with the capture);
//   BM_OneSample         capture and bookkeeping together, the cost of one
//                        sample without its block, at about `depth` frames;
//   BM_OneSampleLibunwind  the same with libunwind's unw_backtrace;
//   BM_SampledArenaPair  mallocx and dallocx in the sampler's arena without a
//                        thread cache, as a sampled block is served;
//   BM_SampledPair       malloc and free of a 64-byte block that is always
//                        sampled (interval 1 byte), everything included;
//   BM_UnsampledPair     the same pair with sampling off, for the difference.
//   BM_FrameRuleLookup   one frame rule cache miss: the .eh_frame_hdr
//                        search and CIE/FDE parse for a return address in
//                        libc, read from the file (arg 1) or through the
//                        mapping (arg 0);
//   BM_UnwinderThreadMemory  eight new threads' captures: the bytes the
//                        unwinders have mapped, as memward counts them, and
//                        the growth of the process's resident set.
// Counters report the sample table's resident bytes and the bytes the
// unwinders have mapped for their caches after the run.
#include <benchmark/benchmark.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "accounting/eh_frame_lookup.h"
#include "accounting/sample_table.h"
#include "accounting/sampler.h"
#include "accounting/stack_capture.h"
#include "accounting/stack_hash.h"
#include "alloc/arena_registry.h"
#include "alloc/engine.h"
#include "alloc/sampled_slabs.h"
#include "alloc/thread_state.h"

namespace {

using memward::accounting::kMaxSampleFrames;

// Recurses `depth` frames and then runs `body` there.
template <typename Body>
__attribute__((noinline)) void AtDepth(int depth, const Body& body) {
  if (depth <= 0) {
    body();
    return;
  }
  AtDepth(depth - 1, body);
  benchmark::ClobberMemory();
}

void RecordAndRemoveSample(const uintptr_t* frames, uint32_t depth, uint64_t hash);

// Captures the stack at about state.range(0) frames deep in every
// iteration, and records and removes a sample of it when `record` is set.
// `libunwind` selects unw_backtrace instead of the selected unwinder.
void CaptureAtDepth(benchmark::State& state, bool record, bool libunwind = false) {
  memward::accounting::SetSampleInterval(512 * 1024);
  // The cached unwinder loads libunwind only when a stack needs it.
  if (libunwind && !memward::accounting::LoadFallbackLibunwind()) {
    state.SkipWithError("libunwind.so.8 could not be loaded");
    return;
  }
  uintptr_t frames[kMaxSampleFrames];
  uint8_t& captures = memward::alloc::t_thread_state.sample_captures;
  uint32_t depth = 0;
  uint64_t hash = 0;
  AtDepth(static_cast<int>(state.range(0)), [&] {
    for (auto _ : state) {
      if (libunwind) {
        depth = memward::accounting::CaptureStackWith(memward::accounting::Unwinder::kLibunwind,
                                                      frames, kMaxSampleFrames, &captures, &hash);
      } else {
        depth = memward::accounting::CaptureStack(frames, kMaxSampleFrames, &captures, &hash);
      }
      if (record) {
        RecordAndRemoveSample(frames, depth, hash);
      } else {
        benchmark::DoNotOptimize(frames);
      }
    }
  });
  state.counters["frames"] = depth;
}

void BM_CaptureStack(benchmark::State& state) { CaptureAtDepth(state, false); }
BENCHMARK(BM_CaptureStack)->Arg(8)->Arg(30)->Arg(60);

void BM_CaptureStackLibunwind(benchmark::State& state) { CaptureAtDepth(state, false, true); }
BENCHMARK(BM_CaptureStackLibunwind)->Arg(8)->Arg(30)->Arg(60);

// Times a new thread's first capture, and nothing else of the thread.
void BM_NewThreadCapture(benchmark::State& state) {
  memward::accounting::SetSampleInterval(512 * 1024);
  for (auto _ : state) {
    double seconds = 0;
    std::thread worker([&] {
      uintptr_t frames[kMaxSampleFrames];
      uint8_t& captures = memward::alloc::t_thread_state.sample_captures;
      uint64_t hash = 0;
      auto start = std::chrono::steady_clock::now();
      memward::accounting::CaptureStack(frames, kMaxSampleFrames, &captures, &hash);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
    worker.join();
    state.SetIterationTime(seconds);
  }
}
BENCHMARK(BM_NewThreadCapture)->UseManualTime();

// A thread's first captures, which step frame by frame with unw_step.
void BM_FirstCapturesOfThread(benchmark::State& state) {
  memward::accounting::SetSampleInterval(512 * 1024);
  uintptr_t frames[kMaxSampleFrames];
  uint32_t depth = 0;
  uint64_t hash = 0;
  AtDepth(static_cast<int>(state.range(0)), [&] {
    for (auto _ : state) {
      uint8_t captures = 0;
      depth = memward::accounting::CaptureStack(frames, kMaxSampleFrames, &captures, &hash);
      benchmark::DoNotOptimize(frames);
    }
  });
  state.counters["frames"] = depth;
}
BENCHMARK(BM_FirstCapturesOfThread)->Arg(8)->Arg(30);

// One rule lookup, as the cached unwinder makes on a miss, for an address
// inside libc's qsort.
void BM_FrameRuleLookup(benchmark::State& state) {
  const auto source = state.range(0) != 0 ? memward::accounting::TableSource::kFile
                                          : memward::accounting::TableSource::kMapping;
  const uintptr_t address = reinterpret_cast<uintptr_t>(&qsort) + 16;
  uint64_t unloads = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(memward::accounting::LookUpFrameRule(address, unloads, source));
  }
}
BENCHMARK(BM_FrameRuleLookup)->Arg(0)->Arg(1);

// Records a sample of a 64-byte block at 512 KiB with the stack `frames`,
// and removes it as its free would: the table's whole work for one sample.
// The stack's hash comes with the capture, as in the sampler.
void RecordAndRemoveSample(const uintptr_t* frames, uint32_t depth, uint64_t hash) {
  memward::accounting::SampleFields fields = {};
  fields.requested_bytes = 64;
  fields.usable_bytes = 64;
  fields.weight_bytes = 512 * 1024;
  fields.weight_objects = 8192;
  static char block[1];
  uint32_t index = memward::accounting::ReserveSample();
  uint32_t site = memward::accounting::AddToSite(frames, depth, hash, fields.weight_bytes,
                                                 fields.weight_objects);
  memward::accounting::PublishSample(index, block, site, fields);
  memward::accounting::SampleOwner owner;
  memward::accounting::RemoveSample(block, &owner);
}

void BM_SampleBookkeeping(benchmark::State& state) {
  memward::accounting::SetSampleInterval(512 * 1024);
  uintptr_t frames[kMaxSampleFrames];
  for (int i = 0; i < 30; i++) frames[i] = 0x400000 + 64 * i;
  const uint64_t hash = memward::accounting::HashStack(frames, 30);
  for (auto _ : state) RecordAndRemoveSample(frames, 30, hash);
}
BENCHMARK(BM_SampleBookkeeping);

void BM_OneSample(benchmark::State& state) { CaptureAtDepth(state, true); }
BENCHMARK(BM_OneSample)->Arg(30)->Arg(60);

void BM_OneSampleLibunwind(benchmark::State& state) { CaptureAtDepth(state, true, true); }
BENCHMARK(BM_OneSampleLibunwind)->Arg(30)->Arg(60);

// Returns the process's resident bytes from /proc/self/statm.
double ResidentBytes() {
  FILE* file = fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  long size = 0;
  long resident = 0;
  if (fscanf(file, "%ld %ld", &size, &resident) != 2) resident = 0;
  fclose(file);
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

// Not a timing: each iteration starts kThreads threads that capture 8 times
// and wait until every one has, then reads what the unwinders have mapped
// in all (the frame rule table, and libunwind's spare trace caches
// included) and the growth of the resident set.
void BM_UnwinderThreadMemory(benchmark::State& state) {
  constexpr int kThreads = 8;
  memward::accounting::SetSampleInterval(512 * 1024);
  double counted = 0;
  double resident = 0;
  double after_exit = 0;
  for (auto _ : state) {
    double resident_before = ResidentBytes();
    std::atomic<int> captured{0};
    std::atomic<bool> measured{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; t++) {
      workers.emplace_back([&] {
        uintptr_t frames[kMaxSampleFrames];
        uint8_t& captures = memward::alloc::t_thread_state.sample_captures;
        uint64_t hash = 0;
        // The first few captures of a thread leave libunwind's trace cache
        // alone; enough follow to create it.
        for (int i = 0; i < 8; i++) {
          memward::accounting::CaptureStack(frames, kMaxSampleFrames, &captures, &hash);
        }
        captured.fetch_add(1);
        while (!measured.load()) std::this_thread::yield();
      });
    }
    while (captured.load() < kThreads) std::this_thread::yield();
    counted += static_cast<double>(memward::accounting::UnwinderCacheBytes());
    resident += ResidentBytes() - resident_before;
    measured.store(true);
    for (std::thread& worker : workers) worker.join();
    after_exit += static_cast<double>(memward::accounting::UnwinderCacheBytes());
  }
  state.counters["threads"] = kThreads;
  state.counters["unwinder_bytes"] = benchmark::Counter(counted, benchmark::Counter::kAvgIterations);
  state.counters["resident_growth"] = benchmark::Counter(resident, benchmark::Counter::kAvgIterations);
  state.counters["unwinder_bytes_after_exit"] =
      benchmark::Counter(after_exit, benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_UnwinderThreadMemory)->Iterations(5);

// The sampler's arena without a thread cache, which a sampled block costs on
// top of the capture and the bookkeeping.
void BM_SampledArenaPair(benchmark::State& state) {
  memward::accounting::SetSampleInterval(512 * 1024);
  const int flags = memward::alloc::SlotAt(memward::alloc::SampledArenaSlot()).arena_flag |
                    memward::alloc::kMallocxTcacheNone;
  memward::alloc::PinSlabOf(64);  // as the first sample of the class does
  for (auto _ : state) {
    void* pointer = mwje_mallocx(64, flags);
    benchmark::DoNotOptimize(pointer);
    mwje_dallocx(pointer, memward::alloc::kMallocxTcacheNone);
  }
  memward::alloc::PinnedSlabCounts pinned = memward::alloc::ReadPinnedSlabCounts();
  state.counters["pinned_blocks"] = pinned.blocks;
  state.counters["pinned_bytes"] = static_cast<double>(pinned.bytes);
}
BENCHMARK(BM_SampledArenaPair);

void MallocFreePair(benchmark::State& state) {
  for (auto _ : state) {
    void* pointer = malloc(64);
    benchmark::DoNotOptimize(pointer);
    free(pointer);
  }
  memward::accounting::SamplerStats stats = memward::accounting::GetSamplerStats();
  state.counters["table_resident_bytes"] = static_cast<double>(stats.table_resident_bytes);
  state.counters["unwinder_cache_bytes"] = static_cast<double>(stats.unwinder_cache_bytes);
}

void BM_SampledPair(benchmark::State& state) {
  memward::accounting::SetSampleInterval(1);
  AtDepth(static_cast<int>(state.range(0)), [&] { MallocFreePair(state); });
  memward::accounting::SetSampleInterval(512 * 1024);
}
BENCHMARK(BM_SampledPair)->Arg(30);

void BM_UnsampledPair(benchmark::State& state) {
  memward::accounting::SetSampleInterval(0);
  AtDepth(static_cast<int>(state.range(0)), [&] { MallocFreePair(state); });
  memward::accounting::SetSampleInterval(512 * 1024);
}
BENCHMARK(BM_UnsampledPair)->Arg(30);

}  // namespace

BENCHMARK_MAIN();
