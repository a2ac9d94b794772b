// The working set's growth rate and where it will be soon, for the pressure
// service on the warden thread: when to read the cgroup again, and whether
// to ask the reclaimers before the soft threshold is reached.
//
// The rate comes from two readings at least kRateWindowNs apart, so the
// kernel's per-CPU batching of memory charges does not make it jump.
// Each window without growth halves it, and below kMinRateBytesPerS it is
// 0. The class is pure: callers pass the time, so tests drive it directly.
#ifndef MEMWARD_ACCOUNTING_PRESSURE_FORECAST_H_
#define MEMWARD_ACCOUNTING_PRESSURE_FORECAST_H_

#include <stdint.h>

namespace memward::accounting {

inline constexpr int64_t kRateWindowNs = 20 * 1000 * 1000;
// 64 KiB/s: slower growth needs over a minute for a few MiB, and the
// periodic read catches it.
inline constexpr double kMinRateBytesPerS = 64 * 1024;
// The shortest delay between two forecast reads. At 2 ms a ramp is seen
// within 2 ms of the projected crossing, and the reads cost at most 500
// pread(2) calls a second, only while a threshold is that close.
inline constexpr int64_t kMinReadDelayNs = 2 * 1000 * 1000;

class GrowthForecast {
 public:
  // Adds a reading of `working_set_bytes` taken at `now_ns` (CLOCK_MONOTONIC).
  void Note(int64_t now_ns, uint64_t working_set_bytes);
  // Starts the next window at the next reading and keeps the rate: a
  // reclaim or purge lowers the working set, and that drop is memward's
  // doing, not the program's growth.
  void Restart() { anchor_ns_ = 0; }
  void Reset() { *this = GrowthForecast(); }

  // Bytes per second; 0 when the working set is not growing.
  double rate() const { return rate_bytes_per_s_; }

  // Returns the delay before the next read for a working set
  // `distance_bytes` below a threshold: half the time the current rate
  // needs to cover the distance, within [kMinReadDelayNs, max_delay_ns].
  // Without growth it is max_delay_ns.
  int64_t NextReadDelayNs(uint64_t distance_bytes, int64_t max_delay_ns) const;

 private:
  int64_t anchor_ns_ = 0;  // 0: the next reading starts a window
  uint64_t anchor_bytes_ = 0;
  double rate_bytes_per_s_ = 0;
};

// Returns the working set at which the warden asks the reclaimers early:
// `soft_entry_bytes` less the growth of `lead_ns` at `rate_bytes_per_s`,
// but no lower than halfway between `goal_bytes` (where a reclaim stops)
// and `soft_entry_bytes`, so each early reclaim frees at least half that
// band. Returns soft_entry_bytes when lead_ns is 0.
uint64_t EarlyReclaimBytes(uint64_t soft_entry_bytes, uint64_t goal_bytes,
                           double rate_bytes_per_s, int64_t lead_ns);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PRESSURE_FORECAST_H_
