#include "accounting/leak_detector.h"

#include <math.h>
#include <string.h>

#include <algorithm>

namespace memward::accounting {
namespace {

enum class FrameOwner { kProgram, kMemward, kRuntime };

// Returns whether `path` names libc or libstdc++, whose frames (strdup,
// std::string's growth) sit between memward and the program's own code.
bool IsRuntimeLibrary(const std::string& path) {
  const char* slash = strrchr(path.c_str(), '/');
  const char* base = slash != nullptr ? slash + 1 : path.c_str();
  return strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libstdc++.so", 12) == 0;
}

FrameOwner OwnerOf(uintptr_t return_address, uintptr_t trim_address,
                   const std::vector<ExecutableMapping>& mappings) {
  uintptr_t address = return_address - 1;  // inside the call instruction
  for (const ExecutableMapping& mapping : mappings) {
    if (address < mapping.start || address >= mapping.limit) continue;
    if (trim_address >= mapping.start && trim_address < mapping.limit) {
      return FrameOwner::kMemward;
    }
    return IsRuntimeLibrary(mapping.path) ? FrameOwner::kRuntime : FrameOwner::kProgram;
  }
  return FrameOwner::kProgram;
}

// Returns the least-squares slope of `values` over `times`.
double Slope(const std::deque<double>& times, const std::deque<double>& values) {
  size_t count = std::min(times.size(), values.size());
  if (count < 2) return 0;
  size_t time_offset = times.size() - count;
  size_t value_offset = values.size() - count;
  double mean_time = 0, mean_value = 0;
  for (size_t i = 0; i < count; i++) {
    mean_time += times[time_offset + i];
    mean_value += values[value_offset + i];
  }
  mean_time /= static_cast<double>(count);
  mean_value /= static_cast<double>(count);
  double covariance = 0, variance = 0;
  for (size_t i = 0; i < count; i++) {
    double dt = times[time_offset + i] - mean_time;
    covariance += dt * (values[value_offset + i] - mean_value);
    variance += dt * dt;
  }
  return variance > 0 ? covariance / variance : 0;
}

}  // namespace

double SampleVariance(const SampleRecord& record) {
  double size = static_cast<double>(record.requested_bytes);
  double variance = record.weight_bytes * (record.weight_bytes - size);
  return variance > 0 ? variance : 0;
}

LeakDetector::LeakDetector(const LeakDetectorOptions& options) : options_(options) {
  if (options_.windows < 2) options_.windows = 2;
}

std::vector<uintptr_t> LeakDetector::SiteKey(const SampleRecord& record,
                                             const std::vector<ExecutableMapping>& mappings,
                                             std::vector<uintptr_t>* stack) const {
  uint32_t depth = std::min<uint32_t>(record.depth, kMaxSampleFrames);
  uint32_t first = 0;
  while (first < depth && record.frames[first] != 0 &&
         OwnerOf(record.frames[first], options_.trim_address, mappings) == FrameOwner::kMemward) {
    first++;
  }
  if (first == depth) first = 0;  // only memward's frames: keep them all
  stack->assign(record.frames + first, record.frames + depth);
  while (!stack->empty() && stack->back() == 0) stack->pop_back();
  if (options_.site_depth == 0) return *stack;

  size_t program = 0;
  while (program < stack->size() &&
         OwnerOf((*stack)[program], options_.trim_address, mappings) != FrameOwner::kProgram) {
    program++;
  }
  if (program == stack->size()) program = 0;
  size_t end = std::min(stack->size(), program + options_.site_depth);
  return std::vector<uintptr_t>(stack->begin() + static_cast<ptrdiff_t>(program),
                                stack->begin() + static_cast<ptrdiff_t>(end));
}

void LeakDetector::CloseWindow(HeapSnapshot snapshot) {
  const std::vector<ExecutableMapping> mappings = ListExecutableMappings();
  const size_t kept_values = static_cast<size_t>(options_.windows) + 1;
  // A site seen for the first time had no live samples in earlier windows.
  const size_t padding = std::min(static_cast<size_t>(windows_closed_), kept_values - 1);

  struct Current {
    double live_bytes = 0;
    double turnover_variance = 0;
    std::vector<size_t> samples;
  };
  std::map<Site*, Current> current;
  std::unordered_map<uint64_t, PreviousSample> next_previous;
  std::vector<uintptr_t> stack;
  for (size_t i = 0; i < snapshot.live.size(); i++) {
    const SampleRecord& record = snapshot.live[i];
    auto [entry, inserted] = sites_.try_emplace(SiteKey(record, mappings, &stack));
    Site& site = entry->second;
    if (inserted) {
      site.history.assign(padding, 0.0);
      site.turnover_variance.assign(padding > 0 ? padding - 1 : 0, 0.0);
    }
    site.stack = stack;
    Current& totals = current[&site];
    totals.live_bytes += record.weight_bytes;
    totals.samples.push_back(i);
    double variance = SampleVariance(record);
    // A sample not live at the previous window was taken in this one.
    if (previous_samples_.erase(record.id) == 0) totals.turnover_variance += variance;
    next_previous[record.id] = PreviousSample{&site, variance};
  }
  // What is left of the previous window's samples was freed in this one.
  for (const auto& [id, sample] : previous_samples_) {
    current[sample.site].turnover_variance += sample.variance;
  }
  previous_samples_ = std::move(next_previous);

  window_times_s_.push_back(static_cast<double>(snapshot.monotonic_ns) / 1e9);
  while (window_times_s_.size() > kept_values) window_times_s_.pop_front();
  windows_closed_++;

  std::map<Site*, std::vector<size_t>> samples_by_site;
  for (auto entry = sites_.begin(); entry != sites_.end();) {
    Site& site = entry->second;
    Current& totals = current[&site];
    if (!site.history.empty()) site.turnover_variance.push_back(totals.turnover_variance);
    site.history.push_back(totals.live_bytes);
    while (site.history.size() > kept_values) site.history.pop_front();
    while (site.turnover_variance.size() > kept_values - 1) site.turnover_variance.pop_front();
    bool empty = std::all_of(site.history.begin(), site.history.end(),
                             [](double value) { return value == 0; });
    if (empty) {
      entry = sites_.erase(entry);  // no sample of it points here any more
      continue;
    }
    samples_by_site[&site] = std::move(totals.samples);
    ++entry;
  }
  last_snapshot_ = std::move(snapshot);

  suspects_.clear();
  for (auto& [key, site] : sites_) {
    LeakSuspect suspect;
    if (!Judge(site, &suspect)) continue;
    suspect.site = key;
    suspect.stack = site.stack;
    suspect.samples = std::move(samples_by_site[&site]);
    suspects_.push_back(std::move(suspect));
  }
  std::sort(suspects_.begin(), suspects_.end(), [](const LeakSuspect& a, const LeakSuspect& b) {
    return a.growth_bytes_per_second > b.growth_bytes_per_second;
  });
  if (suspects_.size() > options_.max_suspects) suspects_.resize(options_.max_suspects);
}

bool LeakDetector::Judge(const Site& site, LeakSuspect* suspect) const {
  const size_t judged = static_cast<size_t>(options_.windows);
  if (site.history.size() < judged + 1) return false;  // too few windows closed
  int grown = 0;
  for (size_t i = 1; i < site.history.size(); i++) {
    if (site.history[i] > site.history[i - 1]) grown++;
  }
  int needed = static_cast<int>(ceil(kGrowthFraction * static_cast<double>(judged)));
  double rise = site.history.back() - site.history.front();
  double noise_variance = 0;
  for (double variance : site.turnover_variance) noise_variance += variance;

  suspect->live_bytes = site.history.back();
  suspect->windows_grown = grown;
  suspect->windows_judged = static_cast<int>(judged);
  suspect->history.assign(site.history.begin(), site.history.end());
  suspect->growth_bytes_per_second = Slope(window_times_s_, site.history);
  if (grown < needed || rise <= 0) return false;
  return rise > kSignificance * sqrt(noise_variance) && suspect->growth_bytes_per_second > 0;
}

}  // namespace memward::accounting
