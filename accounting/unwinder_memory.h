// The memory that libunwind maps for its caches, counted and bounded.
//
// libunwind 1.6 takes its cache memory straight from mmap: each thread's
// trace cache (256 KiB, quadrupled whenever half of it is in use), and a few
// pages per process for the pool that contains the caches' headers.
// memward points libunwind's PLT slots for mmap and munmap at counting
// wrappers, so the sampler's statistics report the bytes that libunwind
// really has mapped. An anonymous mapping that would pass the
// sample_unwinder_max_bytes setting is rejected with ENOMEM. Up to four
// trace caches of exited threads are kept mapped, and counted, for new
// threads.
//
// A thread whose trace cache could not be created or grown still gets its
// stack: unw_backtrace falls back to stepping frame by frame with unw_step,
// which needs no more memory but took 35 us for a 42-frame stack instead of
// 0.4 us (sampler_micro's BM_CaptureStack/30 with
// MEMWARD_CONF=sample_unwinder_max_bytes=0, 2-CPU EPYC virtual machine).
#ifndef MEMWARD_ACCOUNTING_UNWINDER_MEMORY_H_
#define MEMWARD_ACCOUNTING_UNWINDER_MEMORY_H_

#include <stdint.h>

namespace memward::accounting {

// Redirects the mmap and munmap calls of `library` (a dlopen handle) to the
// counting wrappers, rejecting anonymous mappings past `max_bytes` in total.
// Returns false, changing nothing, when the library's relocations for them
// are not found. Called once, outside malloc, before the library is used.
bool CountLibraryMappings(void* library, uint64_t max_bytes);

// Bytes (whole pages) that the library has mapped and not unmapped.
uint64_t UnwinderMappedBytes();

// Anonymous mappings rejected because of the bound.
uint64_t UnwinderRejectedMappings();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_UNWINDER_MEMORY_H_
