// Encodes a heap snapshot as pprof's profile.proto (the format of
// github.com/google/pprof, proto/profile.proto), gzipped as pprof expects.
//
// Sample types, in this order: alloc_objects/count, alloc_space/bytes,
// inuse_objects/count, inuse_space/bytes (the default). All values are the
// sampler's unbiased estimates, rounded to integers. Live samples become one
// pprof sample per (call site, tenant, request, escaped) with the inuse
// values and the labels "tenant", "request" ("slot:generation", only inside
// a request) and "escaped" ("true" for blocks that outlived their request).
// Each call site's cumulative totals become one unlabelled sample with the
// alloc values, because the sampler keeps them per site only.
//
// The profile carries its own function and line tables, so `go tool pprof`
// shows demangled C++ names without the binaries; mappings still name each
// executable segment with its file offset and build ID.
#ifndef MEMWARD_ACCOUNTING_PROFILE_PPROF_H_
#define MEMWARD_ACCOUNTING_PROFILE_PPROF_H_

#include <stdint.h>

#include <string>

#include "accounting/heap_snapshot.h"
#include "accounting/symbolizer.h"

namespace memward::accounting {

struct PprofOptions {
  // Innermost frames in the mapping of this address are dropped; see
  // CountTrimmedFrames. 0 keeps every frame.
  uintptr_t trim_address = 0;
};

// Returns the profile.proto message, not compressed.
std::string EncodePprof(const HeapSnapshot& snapshot, Symbolizer* symbolizer,
                        const PprofOptions& options);

// Returns the gzipped profile in `out`. Returns false when compression fails.
bool WritePprof(const HeapSnapshot& snapshot, Symbolizer* symbolizer,
                const PprofOptions& options, std::string* out);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PROFILE_PPROF_H_
