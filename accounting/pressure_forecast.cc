// Growth rate, projection and read scheduling for the pressure service.
#include "accounting/pressure_forecast.h"

namespace memward::accounting {

void GrowthForecast::Note(int64_t now_ns, uint64_t working_set_bytes) {
  if (anchor_ns_ == 0) {
    anchor_ns_ = now_ns;
    anchor_bytes_ = working_set_bytes;
    return;
  }
  const int64_t elapsed_ns = now_ns - anchor_ns_;
  if (elapsed_ns < kRateWindowNs) return;
  const double grown = static_cast<double>(working_set_bytes) - static_cast<double>(anchor_bytes_);
  const double measured = grown > 0 ? grown * 1e9 / static_cast<double>(elapsed_ns) : 0;
  // A window without growth halves the rate instead of zeroing it: a
  // program that stalls for a moment (a busy CPU) often catches up in a
  // burst, and a zero rate would stretch the next read to the full interval.
  rate_bytes_per_s_ = measured > rate_bytes_per_s_ / 2 ? measured : rate_bytes_per_s_ / 2;
  if (rate_bytes_per_s_ < kMinRateBytesPerS) rate_bytes_per_s_ = 0;
  anchor_ns_ = now_ns;
  anchor_bytes_ = working_set_bytes;
}

int64_t GrowthForecast::NextReadDelayNs(uint64_t distance_bytes, int64_t max_delay_ns) const {
  if (max_delay_ns <= kMinReadDelayNs) return max_delay_ns;
  if (rate_bytes_per_s_ <= 0) return max_delay_ns;
  const double half_time_ns = static_cast<double>(distance_bytes) * 1e9 / rate_bytes_per_s_ / 2;
  if (half_time_ns >= static_cast<double>(max_delay_ns)) return max_delay_ns;
  if (half_time_ns <= static_cast<double>(kMinReadDelayNs)) return kMinReadDelayNs;
  return static_cast<int64_t>(half_time_ns);
}

uint64_t EarlyReclaimBytes(uint64_t soft_entry_bytes, uint64_t goal_bytes,
                           double rate_bytes_per_s, int64_t lead_ns) {
  if (lead_ns <= 0 || rate_bytes_per_s <= 0 || goal_bytes >= soft_entry_bytes) {
    return soft_entry_bytes;
  }
  const uint64_t max_margin = (soft_entry_bytes - goal_bytes) / 2;
  const double margin = rate_bytes_per_s * static_cast<double>(lead_ns) / 1e9;
  if (margin >= static_cast<double>(max_margin)) return soft_entry_bytes - max_margin;
  return soft_entry_bytes - static_cast<uint64_t>(margin);
}

}  // namespace memward::accounting
