// A copy of the sampler's tables at one moment, the input of every exporter
// (pprof, folded stacks, JSON) and of the leak detector. Exporters take a
// HeapSnapshot rather than reading the sampler, so tests can build one from
// records they make themselves.
#ifndef MEMWARD_ACCOUNTING_HEAP_SNAPSHOT_H_
#define MEMWARD_ACCOUNTING_HEAP_SNAPSHOT_H_

#include <stdint.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "accounting/sample_table.h"
#include "accounting/symbolizer.h"

namespace memward::accounting {

struct HeapSnapshot {
  std::vector<SampleRecord> live;  // live samples
  std::vector<SiteTotals> sites;   // cumulative totals per call site
  int64_t interval_bytes = 0;      // mean sampling interval when taken
  int64_t wall_time_ns = 0;        // CLOCK_REALTIME when taken
  int64_t monotonic_ns = 0;        // SampleClockNs() when taken, for ages
  // Tenant names by id; a tenant missing here is shown by its number.
  std::unordered_map<uint32_t, std::string> tenant_names;

  // Returns the tenant's name, or its id as text.
  std::string TenantName(uint32_t tenant) const;
};

// Copies the sampler's tables and the tenant names. Defined in
// profile_service.cc, in the library only.
HeapSnapshot TakeHeapSnapshot();

// Returns the number of innermost frames to drop from a stack: those inside
// the mapping that contains `trim_address` (memward's own code: malloc,
// operator new and the sampler), so a profile starts at the program's call.
// A `trim_address` of 0 drops nothing.
uint32_t CountTrimmedFrames(const uintptr_t* frames, uint32_t depth, uintptr_t trim_address,
                            const Symbolizer& symbolizer);

// Formats a request as "slot:generation", the form of the pprof label and
// of the JSON reports.
std::string FormatRequest(uint32_t slot, uint32_t generation);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_HEAP_SNAPSHOT_H_
