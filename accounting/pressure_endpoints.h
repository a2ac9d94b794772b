// The pressure service's admin endpoints: GET /pressure, GET /decisions and
// POST /reclaim?bytes=SIZE.
#ifndef MEMWARD_ACCOUNTING_PRESSURE_ENDPOINTS_H_
#define MEMWARD_ACCOUNTING_PRESSURE_ENDPOINTS_H_

#include <stdint.h>

#include <string_view>

namespace memward::accounting {

// Registers the endpoints once; later calls only return the first result,
// which is false when the endpoint table rejected one (full, or registered
// already elsewhere).
bool RegisterPressureEndpoints();

// Parses a byte count as MEMWARD_CONF writes sizes ("64m", "1g", "4096").
// Returns false for an empty, malformed or out-of-range value (over 64 GiB).
bool ParseReclaimBytes(std::string_view text, uint64_t* bytes);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PRESSURE_ENDPOINTS_H_
