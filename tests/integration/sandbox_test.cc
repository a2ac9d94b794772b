// A program that sandboxes itself with seccomp before it allocates must keep
// working with memward preloaded. After start-up the allocator may use only
// the calls in the filter's allowlist (memory mapping, futexes, clocks and
// signals), so it must not open a file, create a socket or start a thread.
#include <seccomp.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "harness/process.h"
#include "harness/procfs.h"

namespace memward::integration {
namespace {

using std::chrono::seconds;

struct SandboxRun {
  RunResult result;
  // The program's key=value output lines, except "library" lines, which go
  // to `libraries`.
  std::map<std::string, std::string> fields;
  std::vector<std::string> libraries;
};

// Runs memward_sandboxed_alloc in `mode`, with memward preloaded or not.
SandboxRun run_sandboxed(const std::string& mode, bool preload, int linger_ms) {
  ProcessOptions options;
  // The program looks for the name as the loader records it: the file name
  // given in LD_PRELOAD, before symbolic links are resolved.
  const std::string loaded_name = std::filesystem::path(preload_path()).filename().string();
  options.argv = {SANDBOXED_ALLOC_PATH, mode, loaded_name, std::to_string(linger_ms)};
  if (preload) options.ld_preload = preload_path();

  SandboxRun run;
  run.result = run_program(std::move(options), seconds(40));
  std::istringstream lines(run.result.stdout_text);
  std::string line;
  while (std::getline(lines, line)) {
    std::size_t equals = line.find('=');
    if (equals == std::string::npos) continue;
    std::string key = line.substr(0, equals);
    std::string value = line.substr(equals + 1);
    if (key == "library") {
      run.libraries.push_back(value);
    } else {
      run.fields[key] = value;
    }
  }
  return run;
}

// "blocked syscall 257" from trap mode becomes "257 (openat)".
std::string name_blocked_syscall(const std::string& output) {
  const std::string marker = "blocked syscall ";
  std::size_t position = output.find(marker);
  if (position == std::string::npos) return "none reported";
  int number = std::atoi(output.c_str() + position + marker.size());
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
  std::string text = std::to_string(number) + " (" + (name != nullptr ? name : "unknown") + ")";
  free(name);
  return text;
}

// The same workload run with glibc's malloc gives the expected checksum and
// shows that the filter allows what a correct program needs.
std::string control_checksum(const std::string& mode) {
  SandboxRun control = run_sandboxed(mode, false, 0);
  EXPECT_TRUE(control.result.exited_with(0))
      << "the control run without LD_PRELOAD failed, so the filter or the program is wrong\n"
      << control.result.description;
  EXPECT_FALSE(control.fields["checksum"].empty()) << control.result.description;
  return control.fields["checksum"];
}

TEST(Sandbox, ErrnoFilterKeepsAllocating) {
  std::string expected = control_checksum("errno");
  ASSERT_FALSE(expected.empty());

  // The pause after the workload lets a background thread of memward make
  // its next call, which fails with EPERM and must not take the process down.
  SandboxRun run = run_sandboxed("errno", true, 1000);
  ASSERT_TRUE(run.result.exited_with(0)) << run.result.description;
  EXPECT_EQ(run.fields["filter"], "errno");
  ASSERT_EQ(run.libraries.size(), 1u)
      << preload_library_name() << " is not loaded\n" << run.result.description;
  EXPECT_EQ(run.fields["checksum"], expected) << run.result.description;
  std::cout << "threads before the filter: " << run.fields["threads_before_filter"] << "\n";
}

TEST(Sandbox, KillFilterSeesNoHiddenSyscall) {
  std::string expected = control_checksum("kill");
  ASSERT_FALSE(expected.empty());

  SandboxRun run = run_sandboxed("kill", true, 1000);
  if (run.result.wait_status.has_value() && WIFSIGNALED(*run.result.wait_status) &&
      WTERMSIG(*run.result.wait_status) == SIGSYS) {
    // Run again with a SIGSYS handler to name the call.
    SandboxRun trap = run_sandboxed("trap", true, 1000);
    FAIL() << "a system call outside the allowed set killed the process; blocked syscall: "
           << name_blocked_syscall(trap.result.stdout_text) << "\n"
           << run.result.description;
  }
  ASSERT_TRUE(run.result.exited_with(0)) << run.result.description;
  EXPECT_EQ(run.fields["filter"], "kill");
  ASSERT_EQ(run.libraries.size(), 1u)
      << preload_library_name() << " is not loaded\n" << run.result.description;
  EXPECT_EQ(run.fields["checksum"], expected) << run.result.description;
  std::cout << "threads before the filter: " << run.fields["threads_before_filter"] << "\n";
}

}  // namespace
}  // namespace memward::integration
