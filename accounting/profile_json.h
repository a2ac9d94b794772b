// The heap profile as JSON (GET /heap?format=json): one entry per call
// site, the largest in-use estimate first, with its symbolized stack and
// the four pprof values (estimated in-use and cumulative bytes and
// objects).
#ifndef MEMWARD_ACCOUNTING_PROFILE_JSON_H_
#define MEMWARD_ACCOUNTING_PROFILE_JSON_H_

#include <stdint.h>

#include <string>

#include "accounting/heap_snapshot.h"
#include "accounting/symbolizer.h"
#include "base/json_writer.h"

namespace memward::accounting {

// Returns the JSON object followed by a newline. Frames in the mapping of
// `trim_address` are dropped as in CountTrimmedFrames.
std::string WriteHeapJson(const HeapSnapshot& snapshot, Symbolizer* symbolizer,
                          uintptr_t trim_address);

// Writes `depth` frames as a JSON array of {address, function, file, line},
// innermost first; file and line only where DWARF gives them.
void WriteStackJson(const uintptr_t* frames, uint32_t depth, Symbolizer* symbolizer,
                    base::JsonWriter* json);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PROFILE_JSON_H_
