// memward's own x86-64 unwinder for sampled stacks. It walks the frames
// with the DWARF CFI rules of their return addresses, kept in the
// process's frame rule cache (frame_rule_cache.h), and reads only inside
// the mapping of the thread's stack. On a hit it takes no lock and uses no
// heap memory.
//
// Lock order: a miss calls dl_iterate_phdr, which takes the dynamic
// loader's lock. The walk must therefore run with no memward lock held (the
// sampler calls it before it touches the sample table), so the loader's
// lock is never taken after one of memward's. A thread inside dlopen that
// samples an allocation already holds the loader's lock, which is
// recursive.
#ifndef MEMWARD_ACCOUNTING_CACHED_UNWINDER_H_
#define MEMWARD_ACCOUNTING_CACHED_UNWINDER_H_

#include <stdint.h>

#include "accounting/frame_collector.h"

namespace memward::accounting {

// A walk's handling of a return address whose rule the frame rule cache
// does not contain.
enum class RuleMisses : uint8_t {
  kStop,    // returns kWalkRuleMissed, taking no lock
  kLookUp,  // looks the rule up in the CFI (taking the loader's lock) and caches it
};

// Returned by a walk that met a rule it does not support (see
// cfi_program.h), a return address that no object or FDE contains, or a
// stack whose mapping is not found: the caller then captures the whole
// stack with libunwind.
inline constexpr int kWalkFallBack = -1;
// Returned by a RuleMisses::kStop walk that met an uncached return address.
inline constexpr int kWalkRuleMissed = -2;

// The frame that a walk has reached, from which it resumes.
struct CachedWalk {
  uintptr_t return_address = 0;
  uintptr_t stack_pointer = 0;
  uintptr_t frame_pointer = 0;
  uintptr_t stack_end = 0;  // one past the stack mapping's last byte
};

// Walks the caller's frames, outward from the caller's own return address,
// into `frames`: memward's innermost frames are left out and the rest are
// stored and hashed (frame_collector.h). Returns the number stored, or
// kWalkFallBack or kWalkRuleMissed, and leaves the frames stored until
// then in `frames` and the frame reached in `walk`. The walk stops early,
// keeping what it found, at a return address of 0, at a frame whose return
// address is undefined (the thread's first frame), or at a CFA that does
// not move up inside the stack. With RuleMisses::kStop and a stack whose
// bounds the thread has found before, the walk takes no lock, makes no
// system call and reads only the stack, the rule table and thread-local
// storage.
int WalkCachedFrames(FrameCollector& frames, CachedWalk& walk, RuleMisses misses);

// A capture with the cached unwinder first checks, at most once per this
// interval in the process, whether the loader has unloaded an object since
// the last check, and empties the frame rule table if so. An object loaded
// at an unloaded one's addresses would otherwise be unwound with the old
// object's rules until the next rule miss. Each check costs one
// dl_iterate_phdr call that stops at the first object.
inline constexpr uint64_t kLoaderCheckIntervalNs = 100'000'000;

// Returns true, once per kLoaderCheckIntervalNs in the process, to the
// thread that is to make the loader check. Takes no lock and makes no
// system call where clock_gettime runs in the vDSO.
bool ClaimLoaderCheck();

// Empties the frame rule table if the loader has unloaded an object since
// the table last saw its count. Takes the loader's lock, so it runs where
// a rule lookup may: announced to the fork handler, with no memward lock
// held.
void DropFrameRulesIfObjectsUnloaded();

// Makes later misses read the unwind tables from the libraries' files
// (sample_tables_from_file) when `from_file`, or through their mappings.
// Called at the sampler's set-up, outside malloc.
void SetFrameTablesFromFile(bool from_file);

// Continues a walk that returned kWalkRuleMissed from the frame it reached,
// and returns as WalkCachedFrames does. The frames walked must still be
// live: the caller is the function that started the walk.
int ResumeCachedWalk(FrameCollector& frames, CachedWalk& walk, RuleMisses misses);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_CACHED_UNWINDER_H_
