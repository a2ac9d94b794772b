// The admission state under pressure, recomputed on each warden tick: the
// fair share of a tenant without a soft limit, and at the critical level the
// tenants furthest over their share, whose new work is rejected.
#ifndef MEMWARD_ACCOUNTING_PRESSURE_ADMISSION_H_
#define MEMWARD_ACCOUNTING_PRESSURE_ADMISSION_H_

#include <stdint.h>

#include "accounting/pressure_state.h"

namespace memward::accounting {

// Updates the fair share: the limit divided among the registered user
// tenants. At the critical level it marks tenants over their share, the
// furthest over first, until their excess covers `excess_bytes`; it marks
// at least one when any is over. Below critical it clears the marks. Returns the
// number of tenants marked. Call on the warden thread.
int UpdatePressureAdmission(PressureLevel level, uint64_t limit_bytes, uint64_t excess_bytes);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PRESSURE_ADMISSION_H_
