// GET /cgroup's JSON, and the monitor across fork from a process whose other
// threads are reading it.
#include "accounting/cgroup_endpoint.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/cgroup_tree.h"

namespace memward::accounting {
namespace {

using testing::CgroupTree;

constexpr uint64_t kMiB = 1024 * 1024;

void WriteV2Tree(const CgroupTree& tree) {
  tree.WriteMemTotal(4096 * kMiB);
  tree.Write("proc/self/cgroup", "0::/gw\n");
  tree.Write("proc/self/mountinfo", "25 30 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
  tree.Write("sys/fs/cgroup/gw/memory.max", std::to_string(512 * kMiB));
  tree.Write("sys/fs/cgroup/gw/memory.high", std::to_string(400 * kMiB));
  tree.Write("sys/fs/cgroup/gw/memory.current", std::to_string(100 * kMiB));
  tree.Write("sys/fs/cgroup/gw/memory.stat", "inactive_file " + std::to_string(30 * kMiB));
  tree.Write("sys/fs/cgroup/gw/memory.events", "low 0\nhigh 7\nmax 1\noom 0\noom_kill 0\n");
  tree.Write("sys/fs/cgroup/gw/memory.pressure",
             "some avg10=1.50 avg60=0.00 avg300=0.00 total=1\n"
             "full avg10=0.25 avg60=0.00 avg300=0.00 total=1\n");
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(CgroupEndpoint, JsonHasReadingAndLayout) {
  CgroupTree tree;
  WriteV2Tree(tree);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  std::string json;
  AppendCgroupJson(monitor, &json);

  EXPECT_EQ(json.front(), '{') << json;
  EXPECT_EQ(json.back(), '}') << json;
  EXPECT_EQ(std::count(json.begin(), json.end(), '{'), std::count(json.begin(), json.end(), '}'));
  EXPECT_TRUE(Contains(json, "\"ok\":true")) << json;
  EXPECT_TRUE(Contains(json, "\"version\":\"v2\"")) << json;
  EXPECT_TRUE(Contains(json, "\"hybrid\":false")) << json;
  EXPECT_TRUE(Contains(json, "\"memory_cgroup_path\":\"/gw\"")) << json;
  EXPECT_TRUE(Contains(json, "\"memory_dir\":\"" + tree.Path("sys/fs/cgroup/gw") + "\"")) << json;
  EXPECT_TRUE(Contains(json, "\"limit_bytes\":536870912")) << json;
  EXPECT_TRUE(Contains(json, "\"limit_from_cgroup\":true")) << json;
  EXPECT_TRUE(Contains(json, "\"high_bytes\":419430400")) << json;
  EXPECT_TRUE(Contains(json, "\"usage_bytes\":104857600")) << json;
  EXPECT_TRUE(Contains(json, "\"working_set_bytes\":73400320")) << json;
  EXPECT_TRUE(Contains(json, "\"events\":{\"low\":0,\"high\":7,\"max\":1,\"oom\":0,\"oom_kill\":0}"))
      << json;
  EXPECT_TRUE(Contains(json, "\"some_avg10\":1.5")) << json;
  EXPECT_TRUE(Contains(json, "\"full_avg10\":0.25")) << json;
  EXPECT_TRUE(Contains(json, "\"pressure_source\":{\"kind\":\"none\",\"path\":\"\"}")) << json;
}

TEST(CgroupEndpoint, UnavailableValuesAreNull) {
  CgroupTree tree;
  WriteV2Tree(tree);
  tree.Write("sys/fs/cgroup/gw/memory.high", "max\n");
  tree.Remove("sys/fs/cgroup/gw/memory.pressure");
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  std::string json;
  AppendCgroupJson(monitor, &json);

  EXPECT_TRUE(Contains(json, "\"high_bytes\":null")) << json;
  EXPECT_TRUE(Contains(json, "\"psi\":{\"path\":\"\",\"some_avg10\":null,\"full_avg10\":null}"))
      << json;
}

TEST(CgroupEndpoint, ServesGetAndRejectsQuery) {
  CgroupTree tree;
  WriteV2Tree(tree);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  AdminRequest request;
  request.method = "GET";
  request.path = "/cgroup";
  AdminResponse response;
  ServeCgroupRequest(monitor, request, &response);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_TRUE(Contains(response.body, "\"limit_bytes\":536870912")) << response.body;

  request.query.emplace_back("verbose", "1");
  AdminResponse rejected;
  ServeCgroupRequest(monitor, request, &rejected);
  EXPECT_EQ(rejected.status, 400);
  EXPECT_TRUE(Contains(rejected.body, "unknown query parameter \\\"verbose\\\"")) << rejected.body;
}

// The monitor the fork handlers below act on; null outside the fork test.
std::atomic<CgroupMonitor*> g_fork_monitor{nullptr};

void InstallForkHandlers() {
  static bool installed = [] {
    pthread_atfork(
        [] {
          if (CgroupMonitor* monitor = g_fork_monitor.load()) monitor->LockForFork();
        },
        [] {
          if (CgroupMonitor* monitor = g_fork_monitor.load()) monitor->UnlockInParent();
        },
        [] {
          if (CgroupMonitor* monitor = g_fork_monitor.load()) monitor->ResetInChild();
        });
    return true;
  }();
  (void)installed;
}

// Exit codes of the forked child, one per failed check.
enum ChildResult { kChildOk = 0, kInheritedFdOpen = 10, kReadNotOk, kNoNewFd, kSameGeneration };

int CheckInChild(CgroupMonitor& monitor, bool had_fd, uint64_t parent_generation) {
  if (monitor.pressure_event_fd() != -1) return kInheritedFdOpen;
  if (!monitor.Read().ok) return kReadNotOk;
  if (had_fd && monitor.pressure_event_fd() < 0) return kNoNewFd;
  if (monitor.generation() == parent_generation) return kSameGeneration;
  return kChildOk;
}

// Forks repeatedly while four threads read the monitor; each child must read
// it without deadlock, with its own pressure descriptor.
void ForkWhileReading(CgroupMonitor& monitor) {
  InstallForkHandlers();
  g_fork_monitor.store(&monitor);
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; i++) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        monitor.Read();
        monitor.pressure_event_fd();
      }
    });
  }

  for (int round = 0; round < 20; round++) {
    bool had_fd = monitor.pressure_event_fd() >= 0;
    uint64_t generation = monitor.generation();
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20);  // a deadlocked child dies instead of hanging the test
      _exit(CheckInChild(monitor, had_fd, generation));
    }
    ASSERT_GT(pid, 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), kChildOk) << "round " << round;
  }

  stop.store(true);
  for (std::thread& reader : readers) reader.join();
  g_fork_monitor.store(nullptr);
  // The parent's descriptor is untouched by the children.
  EXPECT_TRUE(monitor.Read().ok);
}

TEST(CgroupFork, PreparedTreeWhileReading) {
  CgroupTree tree;
  WriteV2Tree(tree);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  ForkWhileReading(monitor);
}

TEST(CgroupFork, LiveMonitorReopensInChild) {
  CgroupMonitor monitor;
  if (!monitor.Discover("/", "/proc/self")) GTEST_SKIP() << "no memory cgroup";
  int parent_fd = monitor.pressure_event_fd();
  ForkWhileReading(monitor);
  EXPECT_EQ(monitor.pressure_event_fd(), parent_fd);
}

}  // namespace
}  // namespace memward::accounting
