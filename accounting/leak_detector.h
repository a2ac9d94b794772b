// The leak detector: names the call sites whose estimated live bytes keep
// growing.
//
// Every window (the leak_window setting, 10 s by default) CloseWindow
// records each site's estimated live bytes from a heap snapshot. A site is
// a stack with memward's own innermost frames removed; with
// `site_depth` > 0 it is only the `site_depth` innermost frames outside
// memward, libc and libstdc++, so that one leak reached through many
// callers counts as one site.
//
// Once `windows` windows have been closed (the leak_windows setting, 6 by
// default), a site is a suspect when, over its last `windows` intervals:
//   1. its live bytes rose in at least kGrowthFraction (3/4, rounded up) of
//      them, so a cache that fills and then stays level stops being a
//      suspect within `windows` windows of its last growth; and
//   2. the net rise exceeds kSignificance (2) standard deviations of the
//      sampling noise of the samples taken and freed at the site in that
//      time, so a site that only churns (as many samples freed as taken)
//      is not a suspect by chance.
// Suspects are ranked by growth rate: the least-squares slope of live bytes
// over the windows' times, in bytes per second.
//
// A leak slower than about one sample interval per window rises in few
// windows, so it is found only with a longer leak_window.
//
// Thread safety: none. The owner serializes calls (the profile service
// holds its mutex); CloseWindow runs on the warden thread, never in malloc.
#ifndef MEMWARD_ACCOUNTING_LEAK_DETECTOR_H_
#define MEMWARD_ACCOUNTING_LEAK_DETECTOR_H_

#include <stddef.h>
#include <stdint.h>

#include <deque>
#include <map>
#include <unordered_map>
#include <vector>

#include "accounting/heap_snapshot.h"
#include "accounting/symbolizer.h"

namespace memward::accounting {

struct LeakDetectorOptions {
  int windows = 6;           // intervals a trend is judged over; at least 2
  uint32_t site_depth = 0;   // 0: the whole stack is the site
  // Innermost frames in the mapping of this address are dropped; 0 drops
  // none (the sampler already leaves memward's frames out).
  uintptr_t trim_address = 0;
  size_t max_suspects = 20;  // suspects kept, the fastest growing first
};

struct LeakSuspect {
  std::vector<uintptr_t> site;  // the site's key frames, innermost first
  std::vector<uintptr_t> stack;  // one full stack seen at the site
  double live_bytes = 0;         // estimated, at the last window
  double growth_bytes_per_second = 0;
  int windows_grown = 0;         // intervals in which live bytes rose
  int windows_judged = 0;
  std::vector<double> history;   // live bytes at each judged window, oldest first
  std::vector<size_t> samples;   // indexes into LeakDetector::last_snapshot().live
};

class LeakDetector {
 public:
  // Share of the judged intervals in which live bytes must rise.
  static constexpr double kGrowthFraction = 0.75;
  // Standard deviations of sampling noise the net rise must exceed.
  static constexpr double kSignificance = 2.0;

  explicit LeakDetector(const LeakDetectorOptions& options);

  // Records the live bytes of every site at `snapshot.monotonic_ns` and
  // recomputes the suspects. The snapshot is kept for the report.
  void CloseWindow(HeapSnapshot snapshot);

  // Suspects after the last window, the fastest growing first.
  const std::vector<LeakSuspect>& suspects() const { return suspects_; }
  const HeapSnapshot& last_snapshot() const { return last_snapshot_; }
  int windows_closed() const { return windows_closed_; }
  size_t sites_tracked() const { return sites_.size(); }
  const LeakDetectorOptions& options() const { return options_; }

 private:
  struct Site {
    std::vector<uintptr_t> stack;  // the latest full stack seen
    std::deque<double> history;    // live bytes per window, oldest first
    // Per interval: the variance of the weights of samples taken or freed.
    std::deque<double> turnover_variance;
  };
  // A live sample at the previous window: its site and its noise variance.
  struct PreviousSample {
    Site* site;  // stable: std::map nodes do not move
    double variance;
  };

  std::vector<uintptr_t> SiteKey(const SampleRecord& record,
                                 const std::vector<ExecutableMapping>& mappings,
                                 std::vector<uintptr_t>* stack) const;
  bool Judge(const Site& site, LeakSuspect* suspect) const;

  LeakDetectorOptions options_;
  int windows_closed_ = 0;
  std::map<std::vector<uintptr_t>, Site> sites_;
  std::deque<double> window_times_s_;  // close times of the kept windows
  std::unordered_map<uint64_t, PreviousSample> previous_samples_;  // by sample id
  HeapSnapshot last_snapshot_;
  std::vector<LeakSuspect> suspects_;
};

// The variance that one sample adds to an estimate: w * (w - s) for weight
// w and requested size s, the variance of a Poisson-sampled object's
// contribution. Returns 0 for samples whose weight is their size.
double SampleVariance(const SampleRecord& record);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_LEAK_DETECTOR_H_
