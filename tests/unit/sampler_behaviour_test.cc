// The sampler under every entry point, realloc, aligned allocations, other
// threads, thread exit, fork and re-entry. Most tests sample every
// allocation (interval 1 byte: an allocation of s bytes is then sampled with
// probability 1 - exp(-s), which is 1 in double precision from 37 bytes).
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "accounting/stack_capture.h"
#include "accounting/stack_hash.h"
#include "alloc/scope.h"
#include "memward/memward.h"
#include "tests/unit/sampler_test_util.h"

// jemalloc's API, which memward exports.
extern "C" {
void* mallocx(size_t size, int flags);
void* rallocx(void* pointer, size_t size, int flags);
void dallocx(void* pointer, int flags);
int mallctl(const char* name, void* old_value, size_t* old_length, void* new_value,
            size_t new_length);
}

namespace memward::testing {
namespace {

// Keys made before the sampler first loads libunwind, so that libunwind's
// own key is past glibc's 32 inline keys and a thread's first capture calls
// calloc inside the sampler (pthread_setspecific's second-level block).
// Only meaningful when the program starts with sample_interval=0, as CTest
// runs it; otherwise the re-entry test skips itself.
struct EarlyKeys {
  EarlyKeys() {
    sampler_started = accounting::GetSamplerStats().interval_bytes != 0;
    for (pthread_key_t& key : keys) pthread_key_create(&key, nullptr);
  }
  bool sampler_started = false;
  pthread_key_t keys[40] = {};
};
EarlyKeys g_early_keys;

class SamplerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(accounting::SetSampleInterval(1)); }
  void TearDown() override { accounting::SetSampleInterval(512 * 1024); }
};

// Frees `block` with free() and checks that its sample went with it.
void ExpectFreedWithSample(void* block) {
  uint64_t before = LiveSamples();
  free(block);
  EXPECT_EQ(LiveSamples(), before - 1);
}

TEST_F(SamplerTest, ReentryIsNotSampled) {
  if (g_early_keys.sampler_started) GTEST_SKIP() << "needs MEMWARD_CONF=sample_interval=0";
  std::vector<accounting::SampleRecord> samples;
  std::thread worker([&] {
    SeedThreadSampler(5);
    std::vector<void*> blocks;
    blocks.reserve(100);
    for (int i = 0; i < 100; i++) blocks.push_back(malloc(64));
    samples = SamplesOfThread(CurrentThreadId());
    for (void* block : blocks) free(block);
  });
  worker.join();
  int sampled_64 = 0;
  for (const accounting::SampleRecord& sample : samples) {
    if (sample.requested_bytes == 64) sampled_64++;
    // glibc's calloc of 32 key slots, made by libunwind inside the capture.
    EXPECT_NE(sample.requested_bytes, 32u * 2 * sizeof(void*));
    for (uint32_t i = 0; i < sample.depth; i++) {
      Dl_info info{};
      if (dladdr(reinterpret_cast<void*>(sample.frames[i] - 1), &info) == 0) continue;
      ASSERT_NE(info.dli_fname, nullptr);
      EXPECT_EQ(std::strstr(info.dli_fname, "libunwind"), nullptr) << "frame " << i;
    }
  }
  EXPECT_EQ(sampled_64, 100);
}

TEST_F(SamplerTest, EveryEntryPointSamples) {
  void* block = malloc(100);
  EXPECT_TRUE(IsSampledBlock(block));
  ExpectFreedWithSample(block);

  block = calloc(10, 10);
  ASSERT_TRUE(IsSampledBlock(block));
  for (int i = 0; i < 100; i++) EXPECT_EQ(static_cast<char*>(block)[i], 0) << i;
  ExpectFreedWithSample(block);

  block = realloc(nullptr, 100);
  EXPECT_TRUE(IsSampledBlock(block));
  ExpectFreedWithSample(block);

  block = valloc(100);
  EXPECT_TRUE(IsSampledBlock(block));
  ExpectFreedWithSample(block);

  int* object = new int[40];
  EXPECT_TRUE(IsSampledBlock(object));
  delete[] object;

  auto* nothrow_object = new (std::nothrow) char[100];
  EXPECT_TRUE(IsSampledBlock(nothrow_object));
  delete[] nothrow_object;

  block = mallocx(100, 0);
  EXPECT_TRUE(IsSampledBlock(block));
  uint64_t before = LiveSamples();
  dallocx(block, 0);
  EXPECT_EQ(LiveSamples(), before - 1);
}

// A sample's time comes from the coarse clock that SampleClockNs reads, so
// it lies between two readings of that clock around the allocation.
TEST_F(SamplerTest, SampleTimeLiesWithinCall) {
  const int64_t before = accounting::SampleClockNs();
  void* block = malloc(100);
  const int64_t after = accounting::SampleClockNs();
  ASSERT_TRUE(IsSampledBlock(block));
  std::vector<accounting::SampleRecord> samples = SamplesOfThread(CurrentThreadId());
  const accounting::SampleRecord* sample = nullptr;
  for (const accounting::SampleRecord& candidate : samples) {
    if (candidate.requested_bytes == 100 && candidate.time_ns >= before) sample = &candidate;
  }
  ASSERT_NE(sample, nullptr);
  EXPECT_GE(sample->time_ns, before);
  EXPECT_LE(sample->time_ns, after);
  free(block);
}

// The live count is derived from the samples taken and removed, so every
// sample taken and every free must move it by exactly one. Every check
// comes after the last reading, because a failed check allocates.
TEST_F(SamplerTest, LiveCountFollowsTakenAndFreed) {
  std::vector<void*> blocks;
  blocks.reserve(50);
  const accounting::SamplerStats start = accounting::GetSamplerStats();
  for (int i = 0; i < 50; i++) blocks.push_back(malloc(48));
  const accounting::SamplerStats allocated = accounting::GetSamplerStats();
  for (int i = 0; i < 20; i++) free(blocks[i]);
  const accounting::SamplerStats partly_freed = accounting::GetSamplerStats();
  for (int i = 20; i < 50; i++) free(blocks[i]);
  const accounting::SamplerStats freed = accounting::GetSamplerStats();

  EXPECT_EQ(allocated.samples_taken - start.samples_taken, 50u);
  EXPECT_EQ(allocated.live_samples - start.live_samples, 50u);
  EXPECT_EQ(partly_freed.samples_taken, allocated.samples_taken);
  EXPECT_EQ(partly_freed.live_samples, start.live_samples + 30);
  EXPECT_EQ(freed.live_samples, start.live_samples);
}

// memward's own bookkeeping (the admin server, the warden) allocates in the
// memward tenant's scope, which is never sampled.
TEST_F(SamplerTest, MemwardScopeIsNotSampled) {
  const uint32_t slot = alloc::MemwardArenaSlot();
  ASSERT_NE(slot, 0u);
  const uint64_t before = LiveSamples();
  alloc::SavedScope saved = alloc::EnterScope(accounting::kMemwardTenant, slot, 0);
  void* small = malloc(100);
  void* large = malloc(600 * 1024);
  void* zeroed = calloc(10, 10);
  ASSERT_TRUE(alloc::ExitScope(saved));
  EXPECT_FALSE(IsSampledBlock(small));
  EXPECT_FALSE(IsSampledBlock(large));
  EXPECT_FALSE(IsSampledBlock(zeroed));
  EXPECT_EQ(LiveSamples(), before);
  free(small);
  free(large);
  free(zeroed);

  void* program = malloc(100);  // outside the scope, sampled as before
  EXPECT_TRUE(IsSampledBlock(program));
  ExpectFreedWithSample(program);
}

TEST_F(SamplerTest, AlignedAllocationsAreAligned) {
  for (size_t alignment : {size_t{32}, size_t{64}, size_t{4096}, size_t{1} << 16}) {
    SCOPED_TRACE(alignment);
    void* block = aligned_alloc(alignment, 300);
    EXPECT_TRUE(IsSampledBlock(block));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % alignment, 0u);
    ExpectFreedWithSample(block);

    ASSERT_EQ(posix_memalign(&block, alignment, 300), 0);
    EXPECT_TRUE(IsSampledBlock(block));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % alignment, 0u);
    ExpectFreedWithSample(block);

    block = memalign(alignment, 300);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % alignment, 0u);
    ExpectFreedWithSample(block);

    void* object = ::operator new(300, std::align_val_t(alignment));
    EXPECT_TRUE(IsSampledBlock(object));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(object) % alignment, 0u);
    ::operator delete(object, 300, std::align_val_t(alignment));

    block = mallocx(300, __builtin_ctzl(alignment));
    EXPECT_TRUE(IsSampledBlock(block));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % alignment, 0u);
    dallocx(block, 0);
  }
}

TEST_F(SamplerTest, ReallocKeepsContents) {
  auto* block = static_cast<unsigned char*>(malloc(1000));
  ASSERT_TRUE(IsSampledBlock(block));
  for (int i = 0; i < 1000; i++) block[i] = static_cast<unsigned char>(i * 7);
  uint64_t live = LiveSamples();

  block = static_cast<unsigned char*>(realloc(block, 50000));
  ASSERT_TRUE(IsSampledBlock(block));
  EXPECT_EQ(LiveSamples(), live);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(block[i], static_cast<unsigned char>(i * 7)) << i;

  block = static_cast<unsigned char*>(rallocx(block, 500, 0));
  ASSERT_TRUE(IsSampledBlock(block));
  EXPECT_EQ(LiveSamples(), live);
  for (int i = 0; i < 500; i++) ASSERT_EQ(block[i], static_cast<unsigned char>(i * 7)) << i;
  EXPECT_GE(malloc_usable_size(block), 500u);

  // With sampling off, realloc moves the block out of the sampler's arena.
  ASSERT_TRUE(accounting::SetSampleInterval(0));
  block = static_cast<unsigned char*>(realloc(block, 3000));
  EXPECT_FALSE(IsSampledBlock(block));
  EXPECT_EQ(LiveSamples(), live - 1);
  for (int i = 0; i < 500; i++) ASSERT_EQ(block[i], static_cast<unsigned char>(i * 7)) << i;
  free(block);
}

TEST_F(SamplerTest, FreeOnAnotherThread) {
  const uint64_t live = LiveSamples();
  memward_sampler_stats stats{};
  ASSERT_EQ(memward_sampler_stats_get(&stats), MEMWARD_OK);
  const int64_t process_bytes = stats.process_sampled_bytes;
  std::vector<void*> blocks;
  std::thread producer([&] {
    for (int i = 0; i < 200; i++) blocks.push_back(malloc(64 + i));
  });
  producer.join();
  EXPECT_GE(LiveSamples(), live + 200);
  std::thread consumer([&] {
    for (void* block : blocks) free(block);
    blocks.clear();
    blocks.shrink_to_fit();
  });
  consumer.join();
  EXPECT_EQ(LiveSamples(), live);
  ASSERT_EQ(memward_sampler_stats_get(&stats), MEMWARD_OK);
  EXPECT_EQ(stats.process_sampled_bytes, process_bytes);
}

// Captures the stack from one call site. `captures` is passed to
// CaptureStack as the thread's count of captures, which selects its path.
__attribute__((noinline)) uint32_t CaptureFromHere(uintptr_t* frames, uint8_t captures) {
  uint64_t hash = 0;
  uint32_t depth = accounting::CaptureStack(frames, accounting::kMaxSampleFrames, &captures, &hash);
  EXPECT_EQ(hash, accounting::HashStack(frames, depth));
  asm volatile("" ::: "memory");  // keeps the call above from becoming a jump
  return depth;
}

// A thread's first captures step with unw_step and later ones use
// unw_backtrace's trace cache; both must find the same stack.
TEST_F(SamplerTest, UnwinderPathsAgree) {
  uintptr_t stepped[accounting::kMaxSampleFrames] = {};
  uintptr_t traced[accounting::kMaxSampleFrames] = {};
  uint32_t depths[2] = {};
  // Both captures must come from one call site, so the compiler must not
  // unroll the loop: its trip count is read from a volatile.
  volatile int paths = 2;
  for (int path = 0; path < paths; path++) {
    depths[path] = CaptureFromHere(path == 0 ? stepped : traced, path == 0 ? 0 : 200);
  }
  ASSERT_GT(depths[0], 2u);
  ASSERT_EQ(depths[0], depths[1]);
  for (uint32_t i = 0; i < depths[0]; i++) EXPECT_EQ(stepped[i], traced[i]) << "frame " << i;
}

// libunwind 1.6.2's trace cache of one thread.
constexpr uint64_t kTraceCacheBytes = 256 * 1024;

// Threads exit while others sample; their blocks outlive them.
TEST_F(SamplerTest, ThreadExitWhileSampling) {
  const uint64_t live = LiveSamples();
  const uint64_t unwinder_bytes = accounting::GetSamplerStats().unwinder_cache_bytes;
  std::mutex mutex;
  std::vector<void*> survivors;
  survivors.reserve(64 * 50);
  for (int wave = 0; wave < 4; wave++) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; t++) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 100; i++) {
          void* block = malloc(40 + (i * t) % 500);
          if (i % 2 == 0) {
            free(block);
            continue;
          }
          std::lock_guard<std::mutex> lock(mutex);
          survivors.push_back(block);
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  // Thread start-up and exit allocate too (glibc, libstdc++), so the count
  // is checked across the survivors' frees only.
  EXPECT_GE(LiveSamples(), live + survivors.size());
  for (void* block : survivors) EXPECT_TRUE(IsSampledBlock(block));
  const uint64_t before_free = LiveSamples();
  for (void* block : survivors) free(block);
  EXPECT_EQ(LiveSamples(), before_free - survivors.size());
  // Each thread mapped a 256 KiB trace cache in libunwind, and gave it back
  // at exit: unmapped, or kept as one of at most four spares.
  EXPECT_LE(accounting::GetSamplerStats().unwinder_cache_bytes,
            unwinder_bytes + 4 * kTraceCacheBytes);
}

// Four threads sample while the main thread forks; each child samples,
// frees an inherited sampled block, snapshots and changes the interval.
TEST_F(SamplerTest, ForkWhileThreadsSample) {
  ASSERT_TRUE(accounting::SetSampleInterval(4096));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&] {
      std::vector<void*> blocks;
      while (!stop.load(std::memory_order_relaxed)) {
        blocks.push_back(malloc(700));
        if (blocks.size() > 64) {
          for (void* block : blocks) free(block);
          blocks.clear();
        }
      }
      for (void* block : blocks) free(block);
    });
  }
  void* inherited = malloc(100000);
  for (int round = 0; round < 60; round++) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      alarm(20);  // a deadlock ends the child with SIGALRM
      free(inherited);
      if (!accounting::SetSampleInterval(1)) _exit(2);
      void* block = malloc(200);
      if (!IsSampledBlock(block)) _exit(3);
      std::vector<accounting::SampleRecord> samples;
      accounting::SnapshotSamples(&samples);
      free(block);
      _exit(samples.empty() ? 4 : 0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "child ended by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0) << "round " << round;
  }
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  free(inherited);
}

// A sample taken inside a request names it, and is marked escaped once the
// request ends while the block is still live.
TEST_F(SamplerTest, RequestEndMarksEscaped) {
  memward_tenant_options options;
  memward_tenant_options_init(&options);
  memward_tenant_id tenant = 0;
  ASSERT_EQ(memward_tenant_register("escaping", &options, &tenant), MEMWARD_OK);
  memward_request request;
  ASSERT_EQ(memward_request_begin(tenant, &request), MEMWARD_OK);
  void* block = malloc(333);
  ASSERT_TRUE(IsSampledBlock(block));

  auto find = [&]() {
    accounting::SampleRecord found = {};
    for (const accounting::SampleRecord& sample : SamplesOfThread(CurrentThreadId())) {
      if (sample.requested_bytes == 333) found = sample;
    }
    return found;
  };
  accounting::SampleRecord open = find();
  EXPECT_EQ(open.tenant, tenant);
  EXPECT_NE(open.request_slot, 0u);
  EXPECT_FALSE(open.escaped);

  memward_request_summary summary;
  ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);
  EXPECT_EQ(summary.escaped_bytes, malloc_usable_size(block));
  accounting::SampleRecord ended = find();
  EXPECT_EQ(ended.id, open.id);
  EXPECT_TRUE(ended.escaped);
  free(block);
}

// A full table drops samples (counted) and serves the allocations the
// ordinary way; freeing sampled blocks makes room again.
TEST_F(SamplerTest, FullTableDropsSamples) {
  const uint64_t dropped = accounting::GetSamplerStats().samples_dropped;
  std::vector<void*> blocks;
  blocks.reserve(1 << 20);
  while (accounting::GetSamplerStats().samples_dropped == dropped && blocks.size() < (1 << 20)) {
    blocks.push_back(malloc(64));
  }
  ASSERT_EQ(accounting::GetSamplerStats().samples_dropped, dropped + 1);
  EXPECT_FALSE(IsSampledBlock(blocks.back()));
  EXPECT_TRUE(IsSampledBlock(blocks.front()));
  for (void* block : blocks) free(block);

  void* block = malloc(64);
  EXPECT_TRUE(IsSampledBlock(block));
  free(block);
}

// A sampled call that names an arena of the host's, or a calloc whose size
// overflows, cannot be served from the sampler's arena. Its sample is
// counted as dropped, so that samples taken and dropped add up to the
// points the sampler drew.
TEST_F(SamplerTest, UnservableCallsCountDroppedSamples) {
  unsigned arena = 0;
  size_t length = sizeof(arena);
  ASSERT_EQ(mallctl("arenas.create", &arena, &length, nullptr, 0), 0);
  const int flags = static_cast<int>((arena + 1) << 20) | (1 << 8);  // MALLOCX_ARENA, TCACHE_NONE

  const uint64_t dropped = accounting::GetSamplerStats().samples_dropped;
  void* block = mallocx(64, flags);
  ASSERT_NE(block, nullptr);
  EXPECT_FALSE(IsSampledBlock(block));
  EXPECT_EQ(accounting::GetSamplerStats().samples_dropped, dropped + 1);

  block = rallocx(block, 128, flags);
  ASSERT_NE(block, nullptr);
  EXPECT_FALSE(IsSampledBlock(block));
  EXPECT_EQ(accounting::GetSamplerStats().samples_dropped, dropped + 2);
  dallocx(block, flags);

  // volatile, so that the compiler cannot see the overflow.
  volatile size_t count = SIZE_MAX / 2;
  errno = 0;
  EXPECT_EQ(calloc(count, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(accounting::GetSamplerStats().samples_dropped, dropped + 3);
}

TEST(SamplerSetting, RejectsOutOfRangeInterval) {
  EXPECT_FALSE(accounting::SetSampleInterval(-1));
  EXPECT_FALSE(accounting::SetSampleInterval((int64_t{1} << 30) + 1));
  EXPECT_EQ(memward_sample_interval_set(-5), MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_sample_interval_set(512 * 1024), MEMWARD_OK);
  memward_sampler_stats stats{};
  ASSERT_EQ(memward_sampler_stats_get(&stats), MEMWARD_OK);
  EXPECT_EQ(stats.interval_bytes, 512 * 1024);
  EXPECT_GT(stats.table_bytes, 0u);
}

}  // namespace
}  // namespace memward::testing
