// Control of the allocation sampler, for the library's start-up, the admin
// server and tests. The per-allocation part lives in alloc/sampling.h.
#ifndef MEMWARD_ACCOUNTING_SAMPLER_H_
#define MEMWARD_ACCOUNTING_SAMPLER_H_

#include <stdint.h>

namespace memward::accounting {

// Sets the mean sampling interval in bytes (0 turns sampling off) and sets up
// the sample table and arena on first use. Returns false, changing nothing,
// for a negative value or one above the sample_interval setting's maximum,
// or when the table or arena cannot be set up. Each thread picks the new
// interval up within 4 MiB of its own allocations. Called outside malloc.
bool SetSampleInterval(int64_t bytes);

// Starts sampling at the sample_interval setting; called once by the
// library's constructor.
void StartSampler();

// Loads libunwind once the cached unwinder has met a stack it cannot walk
// (stack_capture.h LoadFallbackLibunwind). Called outside malloc and
// outside the sampler's locks: by each heap snapshot, which the warden
// takes every leak window, and by profile and report writes.
void LoadUnwinderFallbackIfNeeded();

// Holds the sampler's control lock across fork (taken first of memward's
// locks), so a child never inherits it taken.
void LockSamplerForFork();
void UnlockSamplerAfterFork();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_SAMPLER_H_
