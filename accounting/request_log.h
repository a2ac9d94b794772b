// A fixed ring of the most recently ended requests, for GET /requests.
//
// memward_request_end appends one summary per request. Writers claim a slot
// with one fetch_add and publish it under the slot's version number (odd
// while it is written), so the log never allocates, takes no lock that the
// allocation path takes, and costs a few stores per request.
//
// Readers copy each slot and keep the copy only when the version number was
// even and unchanged around the copy. A slot rewritten during the copy is
// skipped, so a reader never sees a torn record.
#ifndef MEMWARD_ACCOUNTING_REQUEST_LOG_H_
#define MEMWARD_ACCOUNTING_REQUEST_LOG_H_

#include <stddef.h>
#include <stdint.h>

#include "accounting/tenant.h"

namespace memward::accounting {

// Summaries kept; older ones are overwritten.
inline constexpr size_t kRequestLogCapacity = 256;

struct RequestRecord {
  uint64_t sequence = 0;  // 1 for the first request logged, then 2, 3, ...
  TenantId tenant = 0;
  uint32_t had_arena = 0;
  int64_t end_unix_ns = 0;  // CLOCK_REALTIME when the request ended
  uint64_t peak_bytes = 0;
  uint64_t allocated_bytes = 0;
  uint64_t escaped_bytes = 0;
  uint64_t allocations = 0;
  uint64_t frees = 0;
};

// Appends a record; `record.sequence` and `record.end_unix_ns` are set here.
void LogEndedRequest(RequestRecord record);

// Copies up to `capacity` of the logged records into `out`, newest first.
// Returns how many were copied.
size_t ReadRequestLog(RequestRecord* out, size_t capacity);

// Returns the number of requests logged since the process started.
uint64_t EndedRequestCount();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_REQUEST_LOG_H_
