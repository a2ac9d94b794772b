// The warden thread: start and stop, periodic tasks, wake-ups, watched
// descriptors, the tenant scope of its callbacks, and fork while it runs.
//
// This binary contains memward's objects itself (it is its own allocator)
// so it can call the internal Warden class.
#include "accounting/warden.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "accounting/tenant.h"
#include "alloc/scope.h"

namespace memward::accounting {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// How long a test waits for an event before it fails. Generous on purpose:
// the tests check that events happen, not how fast.
constexpr auto kEventDeadline = std::chrono::seconds(20);

// Returns how many threads of this process are named `name`.
int CountThreadsNamed(const std::string& name) {
  int count = 0;
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return -1;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + entry->d_name + "/comm");
    std::string thread_name;
    std::getline(comm, thread_name);
    if (thread_name == name) count++;
  }
  closedir(tasks);
  return count;
}

template <typename Predicate>
bool WaitFor(Predicate predicate) {
  const auto deadline = steady_clock::now() + kEventDeadline;
  while (!predicate()) {
    if (steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

struct TaskProbe {
  std::atomic<int> runs{0};
  std::atomic<uint32_t> tenant{UINT32_MAX};
  std::atomic<bool> allocated{false};
};

void RecordRun(void* context) {
  auto* probe = static_cast<TaskProbe*>(context);
  probe->tenant.store(alloc::CurrentScope().tenant);
  std::vector<char> scratch(4096, 1);  // a callback may allocate
  probe->allocated.store(scratch[100] == 1);
  probe->runs.fetch_add(1);
}

struct FdProbe {
  std::atomic<int> calls{0};
  std::atomic<uint32_t> events{0};
};

void RecordReadable(int fd, uint32_t events, void* context) {
  auto* probe = static_cast<FdProbe*>(context);
  char buffer[64];
  while (read(fd, buffer, sizeof(buffer)) > 0) {
  }
  probe->events.store(events);
  probe->calls.fetch_add(1);
}

// The probes live for the whole binary: registrations survive Stop, and
// there is no way to remove a periodic task.
TaskProbe g_slow_task;  // one-hour period: runs only on Wake

void RegisterSlowTaskOnce() {
  static bool registered = false;
  if (registered) return;
  ASSERT_TRUE(Warden::Get().AddPeriodic("slow", 3600 * 1000, RecordRun, &g_slow_task));
  registered = true;
}

TEST(WardenTest, StartsNamedThread) {
  Warden& warden = Warden::Get();
  ASSERT_TRUE(warden.Start());
  EXPECT_TRUE(warden.IsRunning());
  EXPECT_TRUE(warden.Start());  // a second Start is a no-op
  EXPECT_TRUE(WaitFor([] { return CountThreadsNamed("memward-warden") == 1; }));
}

TEST(WardenTest, PeriodicTaskRunsInMemwardScope) {
  static TaskProbe probe;
  ASSERT_TRUE(Warden::Get().Start());
  ASSERT_TRUE(Warden::Get().AddPeriodic("probe", 10, RecordRun, &probe));
  ASSERT_TRUE(WaitFor([] { return probe.runs.load() >= 3; }));
  EXPECT_EQ(probe.tenant.load(), kMemwardTenant);
  EXPECT_TRUE(probe.allocated.load());
}

TEST(WardenTest, WakeRunsTasksBeforeTheirPeriod) {
  ASSERT_NO_FATAL_FAILURE(RegisterSlowTaskOnce());
  ASSERT_TRUE(Warden::Get().Start());
  const int before = g_slow_task.runs.load();
  for (int wake = 1; wake <= 3; wake++) {
    Warden::Get().Wake();
    ASSERT_TRUE(WaitFor([&] { return g_slow_task.runs.load() >= before + wake; }))
        << "wake-up " << wake << " did not run the one-hour task";
  }
}

TEST(WardenTest, WakeTaskRunsOnlyThatTask) {
  static TaskProbe woken;
  static TaskProbe other;
  int woken_id = -1;
  int other_id = -1;
  ASSERT_TRUE(Warden::Get().Start());
  ASSERT_TRUE(Warden::Get().AddPeriodic("woken", 3600 * 1000, RecordRun, &woken, &woken_id));
  ASSERT_TRUE(Warden::Get().AddPeriodic("other", 3600 * 1000, RecordRun, &other, &other_id));
  EXPECT_NE(woken_id, other_id);
  // With a one-hour period, both run only when woken.
  const int other_before = other.runs.load();
  const int woken_before = woken.runs.load();
  for (int wake = 1; wake <= 3; wake++) {
    Warden::Get().WakeTask(woken_id);
    ASSERT_TRUE(WaitFor([&] { return woken.runs.load() >= woken_before + wake; }))
        << "WakeTask " << wake << " did not run the task";
  }
  EXPECT_EQ(other.runs.load(), other_before) << "WakeTask ran a task it did not name";
}

TEST(WardenTest, RunTaskAfterRunsBeforeThePeriod) {
  static TaskProbe probe;
  int id = -1;
  ASSERT_TRUE(Warden::Get().Start());
  ASSERT_TRUE(Warden::Get().AddPeriodic("delayed", 3600 * 1000, RecordRun, &probe, &id));
  const int before = probe.runs.load();
  Warden::Get().RunTaskAfter(id, 5 * 1000 * 1000);
  EXPECT_TRUE(WaitFor([&] { return probe.runs.load() == before + 1; }))
      << "the task did not run after 5 ms; its period is one hour";
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(probe.runs.load(), before + 1) << "one RunTaskAfter ran the task more than once";
}

TEST(WardenTest, RejectsInvalidRegistrations) {
  EXPECT_FALSE(Warden::Get().AddPeriodic("zero", 0, RecordRun, nullptr));
  EXPECT_FALSE(Warden::Get().AddPeriodic("null", 10, nullptr, nullptr));
  EXPECT_FALSE(Warden::Get().Watch(-1, EPOLLIN, RecordReadable, nullptr));
}

TEST(WardenTest, WatchedPipeCallsHandlerUntilUnwatched) {
  FdProbe probe;
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_TRUE(Warden::Get().Start());
  ASSERT_TRUE(Warden::Get().Watch(pipe_fds[0], EPOLLIN, RecordReadable, &probe));

  ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
  ASSERT_TRUE(WaitFor([&] { return probe.calls.load() == 1; }));
  EXPECT_TRUE(probe.events.load() & EPOLLIN);

  Warden::Get().Unwatch(pipe_fds[0]);
  const int calls = probe.calls.load();
  ASSERT_EQ(write(pipe_fds[1], "y", 1), 1);
  // A wake-up makes the loop go round; the unwatched pipe must stay silent.
  const int slow_runs = g_slow_task.runs.load();
  ASSERT_NO_FATAL_FAILURE(RegisterSlowTaskOnce());
  Warden::Get().Wake();
  ASSERT_TRUE(WaitFor([&] { return g_slow_task.runs.load() > slow_runs; }));
  EXPECT_EQ(probe.calls.load(), calls);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST(WardenTest, StopJoinsAndRestartKeepsRegistrations) {
  ASSERT_NO_FATAL_FAILURE(RegisterSlowTaskOnce());
  Warden& warden = Warden::Get();
  ASSERT_TRUE(warden.Start());
  warden.Stop();
  EXPECT_FALSE(warden.IsRunning());
  EXPECT_EQ(CountThreadsNamed("memward-warden"), 0);
  warden.Wake();  // harmless while stopped

  ASSERT_TRUE(warden.Start());
  const int before = g_slow_task.runs.load();
  warden.Wake();
  EXPECT_TRUE(WaitFor([&] { return g_slow_task.runs.load() > before; }));
}

// A child forked while other threads allocate gets a warden of its own,
// which runs the registered tasks. The parent's warden keeps running.
TEST(WardenTest, ForkRestartsWardenInChild) {
  ASSERT_NO_FATAL_FAILURE(RegisterSlowTaskOnce());
  ASSERT_TRUE(Warden::Get().Start());
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int i = 0; i < 3; i++) {
    workers.emplace_back([&stop] {
      while (!stop.load()) {
        std::vector<std::string> strings(64, std::string(200, 'z'));
      }
    });
  }
  for (int round = 0; round < 5; round++) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      int exit_code = 0;
      if (!Warden::Get().IsRunning()) exit_code = 2;
      if (!WaitFor([] { return CountThreadsNamed("memward-warden") == 1; })) exit_code = 3;
      const int before = g_slow_task.runs.load();
      Warden::Get().Wake();
      if (!WaitFor([&] { return g_slow_task.runs.load() > before; })) exit_code = 4;
      _exit(exit_code);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "child ended with status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "2: not running, 3: no thread named memward-warden, 4: Wake ran no task";
  }
  stop.store(true);
  for (std::thread& worker : workers) worker.join();

  // The parent's warden still runs tasks.
  const int before = g_slow_task.runs.load();
  Warden::Get().Wake();
  EXPECT_TRUE(WaitFor([&] { return g_slow_task.runs.load() > before; }));
}

}  // namespace
}  // namespace memward::accounting
