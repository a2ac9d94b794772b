// The pressure service on the warden thread: reads the container's memory
// every `pressure_interval` (and when the allocator or a pressure event
// wakes the warden), runs the ladder and carries out its steps: reclaim,
// purge, decay times and the admission state.
//
// Between those full readings, the allocator's wake-up and the forecast
// (accounting/pressure_forecast.h) run usage-only reads: one pread(2) of
// the usage file, minus the inactive file pages of the last full reading.
// A usage-only read that reaches a threshold or the early reclaim point
// runs the full reading at once.
//
// Thread safety: the tick runs on the warden thread only. g_state_lock
// (pressure_service.cc) guards the last reading and the pending ReclaimNow
// request; it is never held around a callback or mallctl.
#ifndef MEMWARD_ACCOUNTING_PRESSURE_SERVICE_H_
#define MEMWARD_ACCOUNTING_PRESSURE_SERVICE_H_

#include <stdint.h>

#include <string>

#include "accounting/pressure_ladder.h"

namespace memward::accounting {

// Returns one reading; called on the warden thread at each tick.
using PressureInputSource = PressureInput (*)(void* context);

// Replaces where readings come from (the default is the cgroup monitor).
// Tests feed readings with it.
void SetPressureInputSource(PressureInputSource source, void* context);

// Starts the warden (if needed) and the service's periodic task once.
// Returns false when the warden could not start. Never call inside malloc.
bool StartPressureService();

// Stores the pressure level in `level` and returns true once the service has
// started; returns false before, without starting it. For readers such as
// GET /stats that must not turn the ladder on.
bool ReadPressureLevelIfStarted(PressureLevel* level);

// Runs one tick now, on the warden thread, and waits for it. Returns false
// when the warden is not running or the tick did not run within 10 s.
bool EvaluatePressureNow();

// Asks the reclaimers for `bytes` (within their back-off and the CPU cap,
// as a tick does) and purges dirty pages. Runs on the warden thread: called from
// another thread, it hands the request over and waits. Returns the bytes
// the reclaimers reported freed.
uint64_t ReclaimNow(uint64_t bytes);

// Purges every arena's dirty pages now and records the decision. Returns the
// bytes in the purged pages.
uint64_t PurgeNow();

// Writes the level, the last reading, the thresholds, the reclaimers and the
// admission counts as a JSON object, for GET /pressure.
void WritePressureJson(std::string* out);

// Returns the ladder's thresholds in force (the defaults before start).
LadderThresholds CurrentThresholds();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PRESSURE_SERVICE_H_
