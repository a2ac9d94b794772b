// Process exit while the allocator is in use: exit() called from one thread
// while others allocate, and main returning with live blocks. exit() runs
// atexit handlers and static destructors, memward's included, while the
// other threads keep calling malloc and free. A destructor that tears down
// allocator state they still use crashes them. Each case runs in a fresh
// process (process_helper) and repeats, because the race it looks for does
// not show on every run.
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "process_test_support.h"

namespace memward_test {
namespace {

constexpr int kRuns = 20;

class ExitTest : public ProcessTest {
 protected:
  // Runs the helper in `mode` kRuns times. Each run must exit with 0.
  static void ExpectCleanExits(const std::string& mode) {
    for (int run = 0; run < kRuns; ++run) {
      const HelperRun result = RunHelper({mode});
      ASSERT_TRUE(result.outcome.ExitedWithZero())
          << "process_helper " << mode << " (run " << run << ") " << result.outcome.Describe()
          << "; its stderr:\n"
          << result.standard_error;
    }
  }
};

TEST_F(ExitTest, ExitFromWorkerWhileOthersAllocate) { ExpectCleanExits("exit-from-worker"); }

TEST_F(ExitTest, ExitFromMainWhileThreadsAllocate) { ExpectCleanExits("exit-from-main"); }

TEST_F(ExitTest, ReturnFromMainWithLiveMemory) { ExpectCleanExits("return-with-live-memory"); }

TEST_F(ExitTest, ReturnFromMainWhileThreadsAllocate) {
  ExpectCleanExits("return-with-running-threads");
}

// Scope and request state lives in each thread's TLS and in memward's
// tables, and exit must not trip over threads that are inside a scope.
TEST_F(ExitTest, ExitFromWorkerWhileThreadsAreInScopes) { ExpectCleanExits("exit-in-scopes"); }

TEST_F(ExitTest, ReturnFromMainInsideRequest) { ExpectCleanExits("return-in-scopes"); }

// Threads that exit during exit() run their memward clean-up (the pthread
// key destructor) while exit runs the process's destructors.
TEST_F(ExitTest, ExitWhileScopedThreadsComeAndGo) { ExpectCleanExits("exit-during-thread-churn"); }

// stats_at_exit=true prints jemalloc's statistics to stderr at exit.
TEST_F(ExitTest, StatisticsAtExitGoToStderr) {
  const HelperRun result = RunHelper({"check"}, {"MEMWARD_CONF=stats_at_exit=true"});
  ASSERT_TRUE(result.outcome.ExitedWithZero()) << result.outcome.Describe();
  EXPECT_NE(result.standard_error.find("Begin jemalloc statistics"), std::string::npos)
      << result.standard_error.substr(0, 400);
}

// The statistics go to the stderr the process started with, even when the
// program's own exit handler has closed descriptor 2 by then.
TEST_F(ExitTest, StatisticsAtExitSurviveClosedStderr) {
  const HelperRun result =
      RunHelper({"stderr-closed-at-exit"}, {"MEMWARD_CONF=stats_at_exit=true"});
  ASSERT_TRUE(result.outcome.ExitedWithZero()) << result.outcome.Describe();
  EXPECT_NE(result.standard_error.find("Begin jemalloc statistics"), std::string::npos)
      << result.standard_error.substr(0, 400);
}

// A program that closed stderr and opened a data file as descriptor 2 must
// find only its own data in that file, and the statistics still reach the
// original stderr.
TEST_F(ExitTest, StatisticsAtExitSkipReplacedStderr) {
  char path[] = "/tmp/memward-exit-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);

  const HelperRun result = RunHelper({"stderr-becomes-data-file"},
                                     {"MEMWARD_CONF=stats_at_exit=true",
                                      std::string("MEMWARD_TEST_DATA_FILE=") + path});
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  unlink(path);

  ASSERT_TRUE(result.outcome.ExitedWithZero()) << result.outcome.Describe();
  EXPECT_EQ(contents.str(), "data\n");
  EXPECT_NE(result.standard_error.find("Begin jemalloc statistics"), std::string::npos)
      << result.standard_error.substr(0, 400);
}

}  // namespace
}  // namespace memward_test
