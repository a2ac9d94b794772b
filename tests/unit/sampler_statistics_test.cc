// Statistical tests of the sampler: the estimated bytes and objects of known
// allocation patterns against the truth.
//
// Tolerance: with the Poisson process over bytes, each allocation of s bytes
// is sampled independently with probability p = 1 - exp(-s / R), and its
// sample counts s / p bytes and 1 / p objects. The estimate of N allocations
// is therefore a sum of independent terms with
//   variance(bytes)   = sum over allocations of s^2 (1 - p) / p
//   variance(objects) = sum over allocations of (1 - p) / p
// and each check allows 4.5 standard deviations (a false failure has
// probability about 7e-6 per check, about 3e-4 over the checks below). The
// patterns aim at about 800 samples each, so a weight off by more than
// about 16% fails. Every trial runs on a fresh thread with a fixed seed.
#include <dlfcn.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "accounting/stack_capture.h"
#include "tests/unit/sampler_test_util.h"

namespace memward::testing {
namespace {

constexpr int64_t kInterval = 64 * 1024;
constexpr double kSigmas = 4.5;
constexpr double kTargetSamples = 800;
// Ignored after the first load of libunwind, which the sampler's set-up does.
constexpr uint64_t kUnwinderCacheBound = uint64_t{16} << 20;
// Blocks kept live between two snapshots, bounded by count and bytes.
constexpr size_t kRoundBlocks = 100000;
constexpr size_t kRoundBytes = size_t{32} << 20;

double SampleProbability(size_t size) {
  return -std::expm1(-static_cast<double>(size) / static_cast<double>(kInterval));
}

struct Estimate {
  double bytes = 0;
  double objects = 0;
  uint64_t samples = 0;
};

}  // namespace

// Exported, because the test program is linked with -rdynamic and dladdr
// must name it. The empty asm keeps the call to malloc from being a tail call.
__attribute__((noinline, visibility("default"))) void* AllocateAtOneSite(size_t size) {
  void* block = malloc(size);
  asm volatile("" : : "r"(block) : "memory");
  return block;
}

namespace {

// Returns whether the sample's innermost frame is in AllocateAtOneSite: the
// test's own bookkeeping (vectors, snapshots) is sampled too and left out.
bool FromPatternSite(const accounting::SampleRecord& sample) {
  if (sample.depth == 0) return false;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(sample.frames[0] - 1), &info) == 0) return false;
  return info.dli_saddr == reinterpret_cast<void*>(&AllocateAtOneSite);
}

// Adds this thread's live samples from the pattern's site to `estimate`.
void AddLiveSamples(uint32_t thread_id, Estimate* estimate) {
  for (const accounting::SampleRecord& sample : SamplesOfThread(thread_id)) {
    if (!FromPatternSite(sample)) continue;
    estimate->bytes += sample.weight_bytes;
    estimate->objects += sample.weight_objects;
    estimate->samples++;
  }
}

struct Truth {
  double bytes = 0;
  double objects = 0;
  double bytes_variance = 0;
  double objects_variance = 0;

  void Add(size_t size) {
    double p = SampleProbability(size);
    double s = static_cast<double>(size);
    bytes += s;
    objects += 1;
    bytes_variance += s * s * (1 - p) / p;
    objects_variance += (1 - p) / p;
  }
};

// Allocates the pattern `sizes` (repeated `count` times in all), keeping
// each round live while its samples are counted, on the calling thread.
Estimate RunPattern(const std::vector<size_t>& sizes, size_t count, uint64_t seed, Truth* truth) {
  SeedThreadSampler(seed);
  const uint32_t thread_id = CurrentThreadId();
  Estimate estimate;
  std::vector<void*> round;
  round.reserve(kRoundBlocks);
  size_t round_bytes = 0;
  for (size_t i = 0; i < count; i++) {
    size_t size = sizes[i % sizes.size()];
    void* block = AllocateAtOneSite(size);
    EXPECT_NE(block, nullptr);
    truth->Add(size);
    round.push_back(block);
    round_bytes += size;
    if (round.size() == kRoundBlocks || round_bytes >= kRoundBytes || i + 1 == count) {
      AddLiveSamples(thread_id, &estimate);
      for (void* kept : round) free(kept);
      round.clear();
      round_bytes = 0;
    }
  }
  return estimate;
}

void ExpectWithinTolerance(double estimate, double truth, double variance, const char* what) {
  double tolerance = kSigmas * std::sqrt(variance) + 1e-6 * truth;
  EXPECT_NEAR(estimate, truth, tolerance)
      << what << ": relative error " << (estimate - truth) / truth << ", tolerance "
      << tolerance / truth;
}

class SamplerStatisticsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(accounting::SetSampleInterval(kInterval)); }
};

TEST_F(SamplerStatisticsTest, SingleSizesEstimateTruth) {
  const uint64_t dropped_before = accounting::GetSamplerStats().samples_dropped;
  for (size_t size : {size_t{8}, size_t{64}, size_t{1000}, size_t{4096}, size_t{65536},
                      size_t{1} << 20}) {
    size_t count = static_cast<size_t>(std::ceil(kTargetSamples / SampleProbability(size)));
    for (uint64_t seed : {1, 2, 3}) {
      Truth truth;
      Estimate estimate;
      std::thread worker([&] { estimate = RunPattern({size}, count, seed * 7919, &truth); });
      worker.join();
      SCOPED_TRACE("size " + std::to_string(size) + ", seed " + std::to_string(seed) + ", " +
                   std::to_string(estimate.samples) + " samples of " + std::to_string(count));
      ExpectWithinTolerance(estimate.bytes, truth.bytes, truth.bytes_variance, "bytes");
      ExpectWithinTolerance(estimate.objects, truth.objects, truth.objects_variance, "objects");
    }
  }
  EXPECT_EQ(accounting::GetSamplerStats().samples_dropped, dropped_before);
}

TEST_F(SamplerStatisticsTest, MixedSizesAtOneSite) {
  const std::vector<size_t> sizes = {16, 200, 3000, 40000, 300000, 24, 512};
  for (uint64_t seed : {11, 12, 13}) {
    Truth truth;
    Estimate estimate;
    std::thread worker([&] {
      memward_tenant_options options;
      memward_tenant_options_init(&options);
      memward_tenant_id tenant = 0;
      std::string name = "mixed-" + std::to_string(seed);
      ASSERT_EQ(memward_tenant_register(name.c_str(), &options, &tenant), MEMWARD_OK);
      memward_scope saved;
      ASSERT_EQ(memward_scope_enter(tenant, &saved), MEMWARD_OK);
      estimate = RunPattern(sizes, 20000, seed, &truth);
      memward_scope_exit(&saved);
    });
    worker.join();
    SCOPED_TRACE("seed " + std::to_string(seed) + ", " + std::to_string(estimate.samples) +
                 " samples");
    ExpectWithinTolerance(estimate.bytes, truth.bytes, truth.bytes_variance, "bytes");
    ExpectWithinTolerance(estimate.objects, truth.objects, truth.objects_variance, "objects");
  }
}

// The innermost frame of a sample is the program's call, not memward's.
TEST_F(SamplerStatisticsTest, StackStartsAtCallSite) {
  ASSERT_TRUE(accounting::SetSampleInterval(1));
  std::vector<accounting::SampleRecord> samples;
  std::thread worker([&] {
    void* block = AllocateAtOneSite(100);
    samples = SamplesOfThread(CurrentThreadId());
    free(block);
  });
  worker.join();
  ASSERT_FALSE(samples.empty());
  const accounting::SampleRecord* found = nullptr;
  for (const accounting::SampleRecord& sample : samples) {
    if (sample.requested_bytes == 100) found = &sample;
  }
  ASSERT_NE(found, nullptr);
  ASSERT_GE(found->depth, 2u);
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(found->frames[0] - 1), &info), 0);
  ASSERT_NE(info.dli_sname, nullptr);
  EXPECT_NE(std::strstr(info.dli_sname, "AllocateAtOneSite"), nullptr) << info.dli_sname;
}

// The frame-pointer mode also starts at the program's call: this file is
// compiled with frame pointers, and so is the sampler's slow path.
TEST_F(SamplerStatisticsTest, FramePointerModeFindsCallSite) {
  ASSERT_TRUE(accounting::SetSampleInterval(1));
  EXPECT_EQ(accounting::LoadUnwinder(accounting::Unwinder::kFramePointers, kUnwinderCacheBound),
            accounting::Unwinder::kFramePointers);
  std::vector<accounting::SampleRecord> samples;
  std::thread worker([&] {
    void* block = AllocateAtOneSite(100);
    samples = SamplesOfThread(CurrentThreadId());
    free(block);
  });
  worker.join();
  EXPECT_EQ(accounting::LoadUnwinder(accounting::Unwinder::kCached, kUnwinderCacheBound),
            accounting::Unwinder::kCached);
  int found = 0;
  for (const accounting::SampleRecord& sample : samples) {
    if (sample.requested_bytes == 100 && FromPatternSite(sample)) found++;
  }
  EXPECT_EQ(found, 1);
}

// Site totals keep the samples of freed blocks (pprof's alloc_space).
TEST_F(SamplerStatisticsTest, SiteTotalsOutliveFrees) {
  ASSERT_TRUE(accounting::SetSampleInterval(1));
  uint32_t site = accounting::kNoSite;
  std::thread worker([&] {
    for (int i = 0; i < 10; i++) {
      void* block = AllocateAtOneSite(48);
      std::vector<accounting::SampleRecord> samples = SamplesOfThread(CurrentThreadId());
      for (const auto& sample : samples) {
        if (sample.requested_bytes == 48) site = sample.site;
      }
      free(block);
    }
  });
  worker.join();
  ASSERT_NE(site, accounting::kNoSite);
  std::vector<accounting::SiteTotals> totals;
  accounting::SnapshotSiteTotals(&totals);
  const accounting::SiteTotals* entry = nullptr;
  for (const auto& candidate : totals) {
    if (candidate.site == site) entry = &candidate;
  }
  ASSERT_NE(entry, nullptr);
  EXPECT_GE(entry->samples, 10u);
  EXPECT_NEAR(entry->alloc_weight_bytes, 48.0 * static_cast<double>(entry->samples), 1e-6);
}

}  // namespace
}  // namespace memward::testing
