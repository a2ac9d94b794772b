// MEMWARD_CONF read by the preloaded library from a real process: a bad
// setting is reported once on stderr and keeps the default, and strict=true
// makes it fatal.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace {

struct Result {
  int status = 0;
  std::string error_output;
};

// Runs /bin/true under the preloaded library with `conf` as MEMWARD_CONF.
Result RunWithConf(const std::string& conf) {
  int pipe_fds[2];
  EXPECT_EQ(pipe(pipe_fds), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::string preload = std::string("LD_PRELOAD=") + MEMWARD_PRELOAD_PATH;
  std::string conf_variable = "MEMWARD_CONF=" + conf;
  std::vector<char*> environment = {preload.data(), conf_variable.data(), nullptr};
  char program[] = "/bin/true";
  char* arguments[] = {program, nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, program, &actions, nullptr, arguments, environment.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  Result result;
  char buffer[4096];
  ssize_t length;
  while ((length = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) {
    result.error_output.append(buffer, static_cast<size_t>(length));
  }
  close(pipe_fds[0]);
  waitpid(pid, &result.status, 0);
  return result;
}

size_t CountOccurrences(const std::string& text, const std::string& word) {
  size_t count = 0;
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) count++;
  return count;
}

TEST(PreloadSettings, ValidConfIsSilent) {
  Result result = RunWithConf("dirty_decay=5s,narenas=4");
  ASSERT_TRUE(WIFEXITED(result.status));
  EXPECT_EQ(WEXITSTATUS(result.status), 0);
  EXPECT_EQ(result.error_output, "");
}

TEST(PreloadSettings, BadValueReportedOnce) {
  Result result = RunWithConf("dirty_decay=fast,bogus=1");
  ASSERT_TRUE(WIFEXITED(result.status)) << result.error_output;
  EXPECT_EQ(WEXITSTATUS(result.status), 0) << result.error_output;
  EXPECT_EQ(CountOccurrences(result.error_output, "invalid value \"fast\" for dirty_decay"), 1u)
      << result.error_output;
  EXPECT_EQ(CountOccurrences(result.error_output, "unknown setting \"bogus\""), 1u)
      << result.error_output;
  EXPECT_NE(result.error_output.find("keeping 1s"), std::string::npos) << result.error_output;
}

TEST(PreloadSettings, InvertedThresholdsReportedOnce) {
  Result result = RunWithConf("pressure_soft=95,pressure_high=90,pressure_monitor=true");
  ASSERT_TRUE(WIFEXITED(result.status)) << result.error_output;
  EXPECT_EQ(WEXITSTATUS(result.status), 0) << result.error_output;
  EXPECT_EQ(CountOccurrences(result.error_output, "invalid pressure thresholds"), 1u)
      << result.error_output;
  EXPECT_NE(result.error_output.find("using the defaults 80, 90, 95 and 5"), std::string::npos)
      << result.error_output;
}

TEST(PreloadSettings, StrictRejectsInvertedThresholds) {
  Result result = RunWithConf("strict=true,pressure_soft=95,pressure_high=90");
  ASSERT_TRUE(WIFSIGNALED(result.status)) << result.error_output;
  EXPECT_EQ(WTERMSIG(result.status), SIGABRT);
  EXPECT_NE(result.error_output.find("invalid pressure thresholds"), std::string::npos)
      << result.error_output;
}

TEST(PreloadSettings, StrictMakesErrorsFatal) {
  Result result = RunWithConf("strict=true,dirty_decay=fast");
  ASSERT_TRUE(WIFSIGNALED(result.status)) << result.error_output;
  EXPECT_EQ(WTERMSIG(result.status), SIGABRT);
  EXPECT_NE(result.error_output.find("strict=true: stopping instead of using the value"),
            std::string::npos)
      << result.error_output;
}

}  // namespace
