// The cost of one allocation sample, measured on memward's internals (this
// program links memward's objects itself, like tests/unit's sampler test):
//   BM_CaptureStack      libunwind's unw_backtrace (or the frame-pointer walk)
//                        at a stack of about `depth` frames, memward's frames
//                        cut off;
//   BM_SampleBookkeeping the table's work for one sample: reserve a record,
//                        add to the site's totals, publish, and remove it as
//                        free does;
//   BM_SampledArenaPair  mallocx and dallocx in the sampler's arena without a
//                        thread cache, as a sampled block is served;
//   BM_SampledPair       malloc and free of a 64-byte block that is always
//                        sampled (interval 1 byte), everything included;
//   BM_UnsampledPair     the same pair with sampling off, for the difference.
// Counters report the sample table's resident bytes and the estimate of the
// unwinder's caches after the run.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdint>

#include "accounting/sample_table.h"
#include "accounting/sampler.h"
#include "accounting/stack_capture.h"
#include "alloc/arena_registry.h"
#include "alloc/engine.h"
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

void BM_CaptureStack(benchmark::State& state) {
  memward::accounting::SetSampleInterval(512 * 1024);
  uintptr_t frames[kMaxSampleFrames];
  uint8_t& warm = memward::alloc::t_thread_state.sample_unwinder_warm;
  uint32_t depth = 0;
  AtDepth(static_cast<int>(state.range(0)), [&] {
    for (auto _ : state) {
      depth = memward::accounting::CaptureStack(frames, kMaxSampleFrames, &warm);
      benchmark::DoNotOptimize(frames);
    }
  });
  state.counters["frames"] = depth;
}
BENCHMARK(BM_CaptureStack)->Arg(8)->Arg(30)->Arg(60);

void BM_SampleBookkeeping(benchmark::State& state) {
  memward::accounting::SetSampleInterval(512 * 1024);
  uintptr_t frames[kMaxSampleFrames];
  for (int i = 0; i < 30; i++) frames[i] = 0x400000 + 64 * i;
  memward::accounting::SampleFields fields = {};
  fields.requested_bytes = 64;
  fields.usable_bytes = 64;
  fields.weight_bytes = 512 * 1024;
  fields.weight_objects = 8192;
  static char block[1];
  for (auto _ : state) {
    uint32_t index = memward::accounting::ReserveSample();
    uint32_t site = memward::accounting::AddToSite(frames, 30, 512.0 * 1024, 8192);
    memward::accounting::PublishSample(index, block, site, fields);
    memward::accounting::SampleOwner owner;
    memward::accounting::RemoveSample(block, &owner);
  }
}
BENCHMARK(BM_SampleBookkeeping);

// The sampler's arena without a thread cache, which a sampled block costs on
// top of the capture and the bookkeeping.
void BM_SampledArenaPair(benchmark::State& state) {
  memward::accounting::SetSampleInterval(512 * 1024);
  const int flags = memward::alloc::SlotAt(memward::alloc::SampledArenaSlot()).arena_flag |
                    memward::alloc::kMallocxTcacheNone;
  for (auto _ : state) {
    void* pointer = mwje_mallocx(64, flags);
    benchmark::DoNotOptimize(pointer);
    mwje_dallocx(pointer, memward::alloc::kMallocxTcacheNone);
  }
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
