// Starting, watching and stopping the real programs that the integration
// tests run under LD_PRELOAD.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memward::integration {

// A directory made with mkdtemp under $TMPDIR (or /tmp) and removed with all
// its contents on destruction.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "memward-it");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct ProcessOptions {
  // argv[0] is looked up in PATH unless it contains a slash.
  std::vector<std::string> argv;
  // Value of LD_PRELOAD in the child. An empty value removes LD_PRELOAD, so
  // a control run is free of whatever preload the test runner itself has.
  std::string ld_preload;
  // Variables set in the child on top of the test's own environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Variables removed from the child's environment.
  std::vector<std::string> unset_env;
  // Working directory of the child, or empty to keep the test's.
  std::filesystem::path working_dir;
  // Files that receive the child's stdout and stderr. Empty paths send them
  // to files in a directory that the Process owns. Standard input is
  // /dev/null.
  std::filesystem::path stdout_path;
  std::filesystem::path stderr_path;
};

// A child process in its own process group. The destructor sends the group
// SIGTERM, kills what still runs after 2 s with SIGKILL and reaps the child,
// so servers and the helpers they fork never outlive a failed test. It also
// removes the child's default admin socket if the child left it behind.
class Process {
 public:
  // Throws std::runtime_error when the program cannot be started.
  explicit Process(ProcessOptions options);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  // Reaps the child if it has exited and returns whether it is still running.
  bool running();

  // Waits for the child to exit and returns its wait status, or nullopt on
  // timeout (the child is left running).
  std::optional<int> wait_for_exit(std::chrono::milliseconds timeout);

  // Sends a signal to the child alone (not to its group).
  void send_signal(int signal_number);

  // Sends SIGKILL to the child's process group and reaps the child.
  void kill_group();

  // Wait status once the child has been reaped.
  std::optional<int> wait_status() const { return wait_status_; }

  std::string stdout_text() const;
  std::string stderr_text() const;

  // The command line, the exit status (if reaped) and the tails of stdout
  // and stderr, for failure messages.
  std::string describe() const;

 private:
  ProcessOptions options_;
  std::optional<TempDir> capture_dir_;
  pid_t pid_ = -1;
  std::optional<int> wait_status_;
};

struct RunResult {
  // Wait status, or nullopt when the program timed out and was killed.
  std::optional<int> wait_status;
  std::string stdout_text;
  std::string stderr_text;
  // Process::describe() of the finished run.
  std::string description;

  bool exited_with(int code) const;
};

// Runs a program to completion, or kills its process group after `timeout`.
RunResult run_program(ProcessOptions options, std::chrono::milliseconds timeout);

// "exited with code 3", "killed by signal 11 (Segmentation fault), core dumped".
std::string describe_wait_status(int wait_status);

std::string read_text_file(const std::filesystem::path& path);
void write_text_file(const std::filesystem::path& path, std::string_view text);

// Lines of `text` that memward logged: it prefixes each message it writes to
// stderr with "memward: ".
std::vector<std::string> memward_messages(std::string_view text);

// The last `max_bytes` of `text`, marked when cut.
std::string tail_of(std::string_view text, std::size_t max_bytes);

}  // namespace memward::integration
