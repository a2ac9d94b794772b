// The leak detector on synthetic sample records: a leak among churning
// noise sites and a cache that fills and then stays level.
#include "accounting/leak_detector.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "accounting/leak_report.h"
#include "profile_test_util.h"

namespace memward_leak_test {

using memward::testing::CaptureStack;

[[gnu::noinline]] std::vector<uintptr_t> LeakPerRequest() {
  std::vector<uintptr_t> frames = CaptureStack();
  asm volatile("" ::: "memory");
  return frames;
}

[[gnu::noinline]] std::vector<uintptr_t> InsertIntoCache() {
  std::vector<uintptr_t> frames = CaptureStack();
  asm volatile("" ::: "memory");
  return frames;
}

[[gnu::noinline]] std::vector<uintptr_t> ParseHeaders() {
  std::vector<uintptr_t> frames = CaptureStack();
  asm volatile("" ::: "memory");
  return frames;
}

// Two callers of one leaking function, for the site_depth option.
[[gnu::noinline]] std::vector<uintptr_t> LeakFromHandlerA() {
  std::vector<uintptr_t> frames = LeakPerRequest();
  asm volatile("" ::: "memory");
  return frames;
}

[[gnu::noinline]] std::vector<uintptr_t> LeakFromHandlerB() {
  std::vector<uintptr_t> frames = LeakPerRequest();
  asm volatile("" ::: "memory");
  return frames;
}

}  // namespace memward_leak_test

namespace memward {
namespace {

using accounting::HeapSnapshot;
using accounting::LeakDetector;
using accounting::LeakDetectorOptions;
using accounting::SampleRecord;
using testing::MakeRecord;

constexpr double kInterval = 512 * 1024;  // the default sampling interval
constexpr int64_t kWindowNs = 10'000'000'000;

// A synthetic process. At each window the leak site has gained about four
// samples, never freed. The cache gains 30 samples in each of the first two
// windows and then keeps them. Each of 20 noise sites has a fresh Poisson(5)
// number of live samples, all taken since the last window.
class SyntheticHeap {
 public:
  explicit SyntheticHeap(unsigned seed) : random_(seed) {
    leak_ = memward_leak_test::LeakPerRequest();
    cache_ = memward_leak_test::InsertIntoCache();
    noise_ = memward_leak_test::ParseHeaders();
  }

  HeapSnapshot NextWindow() {
    window_++;
    int64_t now = window_ * kWindowNs;
    std::poisson_distribution<int> leak_samples(4.0);
    for (int i = leak_samples(random_); i > 0; i--) {
      SampleRecord record = MakeRecord(next_id_++, kLeakSite, leak_, 300, kInterval);
      record.time_ns = now - kWindowNs / 2;
      record.tenant = 5;
      record.request_slot = 2;
      record.request_generation = static_cast<uint32_t>(next_id_);
      record.escaped = true;
      kept_.push_back(record);
    }
    if (window_ <= 2) {
      for (int i = 0; i < 30; i++) {
        SampleRecord record = MakeRecord(next_id_++, kCacheSite, cache_, 4096, kInterval);
        record.time_ns = now - kWindowNs / 2;
        kept_.push_back(record);
      }
    }
    HeapSnapshot snapshot;
    snapshot.live = kept_;
    std::poisson_distribution<int> noise_samples(5.0);
    for (uint32_t site = 0; site < 20; site++) {
      std::vector<uintptr_t> frames = noise_;
      frames.push_back(0x1000 + site);  // a distinct outermost frame per site
      for (int i = noise_samples(random_); i > 0; i--) {
        SampleRecord record = MakeRecord(next_id_++, 100 + site, frames, 128, kInterval);
        record.time_ns = now - 1000;
        snapshot.live.push_back(record);
      }
    }
    snapshot.monotonic_ns = now;
    snapshot.interval_bytes = static_cast<int64_t>(kInterval);
    snapshot.tenant_names[5] = "acme";
    return snapshot;
  }

  const std::vector<uintptr_t>& leak() const { return leak_; }
  const std::vector<uintptr_t>& cache() const { return cache_; }

  static constexpr uint32_t kLeakSite = 1;
  static constexpr uint32_t kCacheSite = 2;

 private:
  std::mt19937 random_;
  int64_t window_ = 0;
  uint64_t next_id_ = 1;
  std::vector<uintptr_t> leak_, cache_, noise_;
  std::vector<SampleRecord> kept_;  // leak and cache samples, never freed
};

TEST(LeakDetector, NamesLeakFirstAndNotCache) {
  // A window in which the leak gained no sample (probability e^-4, about 2%)
  // counts as no growth, so the leak may drop out for a window. It must be
  // named within three windows of the first judgement, and whenever any
  // site is named, it is the leak alone.
  for (unsigned seed = 1; seed <= 20; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SyntheticHeap heap(seed);
    LeakDetectorOptions options;
    LeakDetector detector(options);
    int first_named = 0;
    int windows_named = 0;
    const int kWindows = 14;
    for (int window = 1; window <= kWindows; window++) {
      detector.CloseWindow(heap.NextWindow());
      const auto& suspects = detector.suspects();
      if (window <= options.windows) {
        EXPECT_TRUE(suspects.empty()) << "window " << window;  // too few windows closed
        continue;
      }
      if (suspects.empty()) continue;
      EXPECT_EQ(suspects[0].stack, heap.leak()) << "window " << window;
      EXPECT_EQ(suspects.size(), 1u) << "window " << window;
      windows_named++;
      if (first_named == 0) first_named = window;
    }
    ASSERT_NE(first_named, 0);
    EXPECT_LE(first_named, options.windows + 3);
    EXPECT_GE(windows_named, (kWindows - options.windows) / 2);
  }
}

TEST(LeakDetector, GrowthRateMatchesLeak) {
  SyntheticHeap heap(7);
  LeakDetector detector({});
  for (int window = 1; window <= 30; window++) detector.CloseWindow(heap.NextWindow());
  ASSERT_FALSE(detector.suspects().empty());
  // Four samples of 512 KiB per 10 s window: about 210 KB/s. The slope over
  // seven windows of Poisson counts varies by about a fifth.
  double rate = detector.suspects()[0].growth_bytes_per_second;
  EXPECT_GT(rate, 4 * kInterval / 10 * 0.6);
  EXPECT_LT(rate, 4 * kInterval / 10 * 1.4);
  EXPECT_EQ(detector.suspects()[0].windows_judged, 6);
  EXPECT_GE(detector.suspects()[0].windows_grown, 5);
}

TEST(LeakDetector, PlateauedSiteStopsBeingSuspect) {
  std::vector<uintptr_t> frames = memward_leak_test::InsertIntoCache();
  LeakDetector detector({});
  std::vector<SampleRecord> live;
  uint64_t id = 1;
  bool named_while_growing = false;
  for (int window = 1; window <= 20; window++) {
    if (window <= 10) {
      for (int i = 0; i < 5; i++) live.push_back(MakeRecord(id++, 1, frames, 64, kInterval));
    }
    HeapSnapshot snapshot;
    snapshot.live = live;
    snapshot.monotonic_ns = window * kWindowNs;
    detector.CloseWindow(snapshot);
    if (window == 10) named_while_growing = !detector.suspects().empty();
    // Two windows without growth leave at most 4 of 6 intervals grown.
    if (window >= 12) {
      EXPECT_TRUE(detector.suspects().empty()) << "window " << window;
    }
  }
  EXPECT_TRUE(named_while_growing);
}

TEST(LeakDetector, SiteDepthMergesCallers) {
  std::vector<uintptr_t> from_a = memward_leak_test::LeakFromHandlerA();
  std::vector<uintptr_t> from_b = memward_leak_test::LeakFromHandlerB();
  ASSERT_NE(from_a, from_b);
  LeakDetectorOptions options;
  options.site_depth = 2;  // CaptureStack and LeakPerRequest
  LeakDetector merged(options);
  LeakDetector whole({});
  std::vector<SampleRecord> live;
  uint64_t id = 1;
  for (int window = 1; window <= 8; window++) {
    // Each caller alone grows in every other window; together, in each.
    const auto& frames = window % 2 == 0 ? from_a : from_b;
    for (int i = 0; i < 6; i++) live.push_back(MakeRecord(id++, 1, frames, 64, kInterval));
    HeapSnapshot snapshot;
    snapshot.live = live;
    snapshot.monotonic_ns = window * kWindowNs;
    merged.CloseWindow(snapshot);
    whole.CloseWindow(snapshot);
  }
  ASSERT_EQ(merged.suspects().size(), 1u);
  EXPECT_EQ(merged.suspects()[0].site.size(), 2u);
  EXPECT_TRUE(whole.suspects().empty());
}

TEST(LeakDetector, FreedSamplesLeaveNoSite) {
  std::vector<uintptr_t> frames = memward_leak_test::ParseHeaders();
  LeakDetector detector({});
  HeapSnapshot snapshot;
  snapshot.live.push_back(MakeRecord(1, 1, frames, 64, kInterval));
  detector.CloseWindow(snapshot);
  EXPECT_EQ(detector.sites_tracked(), 1u);
  for (int window = 0; window < 7; window++) detector.CloseWindow(HeapSnapshot{});
  EXPECT_EQ(detector.sites_tracked(), 0u);
}

TEST(LeakReport, JsonNamesFunctionTenantsAndRequests) {
  SyntheticHeap heap(3);
  LeakDetector detector({});
  for (int window = 1; window <= 8; window++) detector.CloseWindow(heap.NextWindow());
  accounting::Symbolizer symbolizer;
  accounting::LeakReportOptions options;
  options.window_ms = 10000;
  std::string json = accounting::LeakReportJson(detector, &symbolizer, options);
  EXPECT_NE(json.find(R"x("function":"memward::testing::CaptureStack()")x"), std::string::npos)
      << json;
  EXPECT_NE(json.find("memward_leak_test::LeakPerRequest()"), std::string::npos);
  EXPECT_NE(json.find(R"("name":"acme")"), std::string::npos);
  EXPECT_NE(json.find(R"("escaped":true)"), std::string::npos);
  EXPECT_NE(json.find(R"("window_ms":10000)"), std::string::npos);
  EXPECT_NE(json.find(R"("escaped_sites":[{)"), std::string::npos);
  EXPECT_NE(json.find(R"("age_seconds":{"min":5)"), std::string::npos) << json;
  EXPECT_EQ(json.find("InsertIntoCache"), std::string::npos);
  EXPECT_EQ(json.back(), '\n');
}

}  // namespace
}  // namespace memward
