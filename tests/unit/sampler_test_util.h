// Helpers of the sampler tests, which link memward's objects into the test
// program itself so that they can read the sample table directly.
#ifndef MEMWARD_TESTS_UNIT_SAMPLER_TEST_UTIL_H_
#define MEMWARD_TESTS_UNIT_SAMPLER_TEST_UTIL_H_

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "accounting/owner_map.h"
#include "accounting/sample_table.h"
#include "accounting/sampler.h"
#include "alloc/arena_registry.h"
#include "alloc/sampling.h"
#include "alloc/thread_state.h"

namespace memward::testing {

inline uint32_t CurrentThreadId() { return static_cast<uint32_t>(syscall(SYS_gettid)); }

// Seeds the calling thread's sampler and makes its next allocation start a
// new gap at the current interval.
inline void SeedThreadSampler(uint64_t seed) {
  alloc::ResetThreadSampling();
  alloc::t_thread_state.sample_random = seed;
}

// Returns whether `pointer` was served by the sampler's arena.
inline bool IsSampledBlock(const void* pointer) {
  uint16_t slot = accounting::OwnerSlotOf(pointer);
  return slot != 0 && alloc::SlotAt(slot).kind == alloc::ArenaKind::kSampled;
}

// Returns the live samples taken on thread `thread_id`.
inline std::vector<accounting::SampleRecord> SamplesOfThread(uint32_t thread_id) {
  std::vector<accounting::SampleRecord> all;
  accounting::SnapshotSamples(&all);
  std::vector<accounting::SampleRecord> selected;
  for (const accounting::SampleRecord& sample : all) {
    if (sample.thread_id == thread_id) selected.push_back(sample);
  }
  return selected;
}

inline uint64_t LiveSamples() { return accounting::GetSamplerStats().live_samples; }

}  // namespace memward::testing

#endif  // MEMWARD_TESTS_UNIT_SAMPLER_TEST_UTIL_H_
