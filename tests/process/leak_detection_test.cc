// The leak detector and the heap profile exports with real sampling, in a
// process that runs on memward linked or preloaded. Simulated requests leak
// 300 bytes each at one site. Temporary allocations at 24 other sites and a
// cache that fills and then only replaces its entries are the noise.
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memward/memward.h"
#include "process_test_support.h"

namespace memward_leak_process_test {

// Never freed: the leak. The fork test's two threads append to it at once,
// so appends hold g_leaked_lock.
std::vector<void*> g_leaked;
std::mutex g_leaked_lock;
std::deque<void*> g_cache;     // the cache's entries, oldest first
std::vector<void*> g_retained;  // blocks the pprof test holds

constexpr size_t kLeakBytes = 300;
constexpr size_t kCacheEntryBytes = 4096;
constexpr size_t kCacheEntries = 2000;  // 8 MB once full

[[gnu::noinline]] void RememberRequest() {
  void* block = malloc(kLeakBytes);
  ASSERT_NE(block, nullptr) << "malloc(" << kLeakBytes << ")";
  memset(block, 1, kLeakBytes);
  std::lock_guard<std::mutex> lock(g_leaked_lock);
  g_leaked.push_back(block);
  asm volatile("" ::: "memory");
}

// Fills the cache to kCacheEntries; once full, each insertion evicts the
// oldest entry, so its size stays level.
[[gnu::noinline]] void InsertIntoCache() {
  if (g_cache.size() >= kCacheEntries) {
    free(g_cache.front());
    g_cache.pop_front();
  }
  void* entry = malloc(kCacheEntryBytes);
  ASSERT_NE(entry, nullptr) << "malloc(" << kCacheEntryBytes << ")";
  memset(entry, 2, 64);
  g_cache.push_back(entry);
  asm volatile("" ::: "memory");
}

// A temporary buffer at one of many call sites, freed before the request
// ends: noise that allocates a lot but keeps nothing live.
template <int kSite>
[[gnu::noinline]] void ParseField(std::mt19937* random) {
  size_t size = 64 + (*random)() % 4096;
  char* buffer = static_cast<char*>(malloc(size));
  ASSERT_NE(buffer, nullptr) << "malloc(" << size << ")";
  memset(buffer, kSite, size);
  asm volatile("" : : "r"(buffer) : "memory");
  free(buffer);
}

template <int... kSites>
void ParseAllFields(std::mt19937* random, std::integer_sequence<int, kSites...>) {
  (ParseField<kSites>(random), ...);
}

[[gnu::noinline]] void HandleRequest(std::mt19937* random, bool fill_cache) {
  ParseAllFields(random, std::make_integer_sequence<int, 24>());
  if (fill_cache) InsertIntoCache();
  RememberRequest();
}

// A response body kept after its request ended: it escapes the request.
// 256 KiB is four sampling intervals, so it is sampled with probability
// 1 - e^-4 (98%).
[[gnu::noinline]] void KeepResponse() {
  void* block = malloc(256 * 1024);
  memset(block, 4, 4096);
  std::lock_guard<std::mutex> lock(g_leaked_lock);
  g_leaked.push_back(block);
  asm volatile("" ::: "memory");
}

[[gnu::noinline]] void RetainBlocks(size_t count, size_t bytes) {
  for (size_t i = 0; i < count; i++) {
    void* block = malloc(bytes);
    memset(block, 3, bytes);
    g_retained.push_back(block);
  }
  asm volatile("" ::: "memory");
}

}  // namespace memward_leak_process_test

namespace {

using memward_test::AssertMemwardIsAllocator;

namespace app = memward_leak_process_test;

// The sampling interval of these tests: 64 KiB, an eighth of the default,
// so each window needs fewer simulated requests.
constexpr int64_t kTestInterval = 64 * 1024;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

// Returns the "function" of the first suspect in a leak report, or "".
std::string FirstSuspect(const std::string& report) {
  size_t suspects = report.find("\"suspects\":[");
  if (suspects == std::string::npos) return "";
  size_t function = report.find("\"function\":\"", suspects);
  size_t escaped_sites = report.find("\"escaped_sites\":");
  if (function == std::string::npos || function > escaped_sites) return "";
  function += strlen("\"function\":\"");
  return report.substr(function, report.find('"', function) - function);
}

// Returns the suspects part of a leak report.
std::string SuspectsPart(const std::string& report) {
  size_t begin = report.find("\"suspects\":[");
  size_t end = report.find("\"escaped_sites\":");
  if (begin == std::string::npos || end == std::string::npos) return "";
  return report.substr(begin, end - begin);
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/memward-leak-XXXXXX";
    path_ = mkdtemp(pattern) != nullptr ? pattern : "";
  }
  ~TempDir() {
    if (!path_.empty()) system(("rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class LeakDetectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(AssertMemwardIsAllocator());
    ASSERT_EQ(memward_sample_interval_set(kTestInterval), MEMWARD_OK);
    ASSERT_FALSE(dir_.path().empty());
  }

  TempDir dir_;
};

TEST_F(LeakDetectionTest, NamesLeakFirstNotCache) {
  memward_tenant_id tenant = 0;
  int status = memward_tenant_register("leaky-tenant", nullptr, &tenant);
  ASSERT_TRUE(status == MEMWARD_OK || status == MEMWARD_ERROR_EXISTS) << status;
  std::mt19937 random(42);
  const std::string report_path = dir_.path() + "/leaks.json";
  // 1,500 requests leak 450 KB a window: about 7 samples at 64 KiB.
  const int kRequestsPerWindow = 1500;
  const int kWindows = 14;
  const int kJudged = 6;  // the leak_windows default
  int first_named = 0;
  std::string report;
  for (int window = 1; window <= kWindows; window++) {
    for (int i = 0; i < kRequestsPerWindow; i++) {
      memward_request request;
      ASSERT_EQ(memward_request_begin(tenant, &request), MEMWARD_OK);
      // The cache fills in the first window and a half, then only replaces.
      app::HandleRequest(&random, true);
      // A request arena with escaped blocks is not reused, so only the
      // pool's first requests (64 by default) have one: escapes are made
      // there.
      if (window == 1 && i < 8) app::KeepResponse();
      memward_request_summary summary;
      ASSERT_EQ(memward_request_end(&request, &summary), MEMWARD_OK);
    }
    ASSERT_EQ(memward_leak_window_close(), MEMWARD_OK);
    ASSERT_EQ(memward_leak_report_write(report_path.c_str()), MEMWARD_OK);
    report = ReadFile(report_path);
    std::string suspects = SuspectsPart(report);
    ASSERT_FALSE(suspects.empty()) << report;
    EXPECT_EQ(suspects.find("InsertIntoCache"), std::string::npos)
        << "window " << window << ": " << suspects;
    std::string first = FirstSuspect(report);
    if (window <= kJudged) {
      EXPECT_EQ(first, "") << "window " << window;  // too few windows closed
      continue;
    }
    if (!first.empty()) {
      EXPECT_EQ(first, "memward_leak_process_test::RememberRequest()") << report;
      if (first_named == 0) first_named = window;
    }
  }
  EXPECT_NE(first_named, 0) << report;
  EXPECT_LE(first_named, kJudged + 3) << report;
  EXPECT_NE(report.find("\"name\":\"leaky-tenant\""), std::string::npos) << report;
  // The kept responses outlived their requests; they stopped growing, so
  // they are listed as escaped but are not suspects.
  size_t escaped_sites = report.find("\"escaped_sites\":[{");
  ASSERT_NE(escaped_sites, std::string::npos) << report;
  EXPECT_NE(report.find("memward_leak_process_test::KeepResponse()", escaped_sites),
            std::string::npos)
      << report;
  EXPECT_EQ(SuspectsPart(report).find("KeepResponse"), std::string::npos) << report;
}

// Returns the flat bytes that `go tool pprof -top -unit=B` shows for the
// line naming `function`, or -1.
long long FlatBytes(const std::string& top, const std::string& function) {
  std::istringstream lines(top);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(function) == std::string::npos) continue;
    return atoll(line.c_str() + line.find_first_not_of(' '));
  }
  return -1;
}

std::string RunPprof(const std::string& dir, const std::string& args,
                     const std::string& profile) {
  std::string command = "env HOME='" + dir + "' GOPATH='" + dir + "/go' GOCACHE='" + dir +
                        "/gocache' PPROF_TMPDIR='" + dir + "' GOFLAGS= GOPROXY=off '" +
                        MEMWARD_GO_PATH + "' tool pprof " + args + " '" + profile + "' 2>&1";
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  size_t read;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, read);
  int status = pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  return output;
}

TEST_F(LeakDetectionTest, PprofShowsRetainedBytes) {
  // 4,000 blocks of 1,000 bytes: about 61 samples at 64 KiB, so the
  // estimate's relative standard deviation is about 13%; 40% is three of
  // them.
  const long long kExpected = 4000 * 1000;
  app::RetainBlocks(4000, 1000);
  const std::string profile = dir_.path() + "/heap.pb.gz";
  ASSERT_EQ(memward_heap_profile_write(profile.c_str(), MEMWARD_PROFILE_PPROF), MEMWARD_OK);
  std::string top = RunPprof(dir_.path(), "-top -sample_index=inuse_space -unit=B", profile);
  long long flat = FlatBytes(top, "memward_leak_process_test::RetainBlocks(");
  EXPECT_GT(flat, kExpected * 6 / 10) << top;
  EXPECT_LT(flat, kExpected * 14 / 10) << top;
  // memward's own frames (malloc, the sampler) are trimmed.
  EXPECT_EQ(top.find("memward::"), std::string::npos) << top;

  std::string traces = RunPprof(dir_.path(), "-traces -sample_index=inuse_space", profile);
  size_t retain = traces.find("memward_leak_process_test::RetainBlocks(");
  ASSERT_NE(retain, std::string::npos) << traces;
  EXPECT_NE(traces.find("LeakDetectionTest_PprofShowsRetainedBytes_Test::TestBody()", retain),
            std::string::npos)
      << traces;

  const std::string folded = dir_.path() + "/heap.folded";
  ASSERT_EQ(memward_heap_profile_write(folded.c_str(), MEMWARD_PROFILE_FOLDED), MEMWARD_OK);
  std::istringstream lines(ReadFile(folded));
  std::string line;
  int count = 0;
  bool found = false;
  while (std::getline(lines, line)) {
    count++;
    size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    EXPECT_EQ(line.find_first_not_of("0123456789", space + 1), std::string::npos) << line;
    if (line.find("RetainBlocks") != std::string::npos) found = true;
  }
  EXPECT_GT(count, 0);
  EXPECT_TRUE(found);
  for (void* block : app::g_retained) free(block);
  app::g_retained.clear();

  EXPECT_EQ(memward_heap_profile_write(profile.c_str(), 7), MEMWARD_ERROR_INVALID);
  EXPECT_EQ(memward_heap_profile_write("/nonexistent-dir/heap", MEMWARD_PROFILE_JSON),
            MEMWARD_ERROR_IO);
}

TEST_F(LeakDetectionTest, ForkWhileThreadsCloseWindows) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const std::string dir = dir_.path();
  for (int t = 0; t < 2; t++) {
    threads.emplace_back([&stop, &dir, t] {
      std::mt19937 random(t);
      const std::string path = dir + "/thread" + std::to_string(t) + ".json";
      while (!stop.load()) {
        for (int i = 0; i < 50; i++) app::HandleRequest(&random, false);
        if (t == 0) memward_leak_window_close();
        if (t == 1) memward_heap_profile_write(path.c_str(), MEMWARD_PROFILE_JSON);
      }
    });
  }
  // Each child loads libdw's view of every module again: a few hundred
  // milliseconds, so eight rounds.
  for (int round = 0; round < 8; round++) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      memward_test::ArmChildAlarm();
      std::string path = dir + "/child" + std::to_string(round) + ".json";
      bool ok = memward_leak_window_close() == MEMWARD_OK &&
                memward_leak_report_write(path.c_str()) == MEMWARD_OK &&
                memward_heap_profile_write(path.c_str(), MEMWARD_PROFILE_PPROF) == MEMWARD_OK;
      _exit(ok ? 0 : 1);
    }
    memward_test::ChildOutcome outcome = memward_test::WaitForChild(pid, memward_test::kChildDeadline);
    EXPECT_TRUE(outcome.ExitedWithZero()) << outcome.Describe();
  }
  stop = true;
  for (auto& thread : threads) thread.join();
}

}  // namespace
