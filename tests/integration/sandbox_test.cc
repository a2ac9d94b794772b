// A program that sandboxes itself with seccomp before it allocates must keep
// working with memward preloaded. After start-up the allocator may use only
// the calls in the filter's allowlist (memory mapping, futexes, clocks and
// signals), so it must not open a file, create a socket or start a thread.
#include <seccomp.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>
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

// A memward configuration to run the sandboxed workload under.
struct SandboxCase {
  std::string name;
  // Value of MEMWARD_CONF, or empty to run with the defaults.
  std::string memward_conf;
};

void PrintTo(const SandboxCase& sandbox_case, std::ostream* stream) {
  *stream << "MEMWARD_CONF=" << sandbox_case.memward_conf;
}

// Runs memward_sandboxed_alloc in `mode`, with memward preloaded or not.
SandboxRun run_sandboxed(const std::string& mode, bool preload, int linger_ms,
                         const std::string& memward_conf = "") {
  ProcessOptions options;
  // The program looks for the name as the loader records it: the file name
  // given in LD_PRELOAD, before symbolic links are resolved.
  const std::string loaded_name = std::filesystem::path(preload_path()).filename().string();
  options.argv = {SANDBOXED_ALLOC_PATH, mode, loaded_name, std::to_string(linger_ms)};
  if (preload) options.ld_preload = preload_path();
  // The admin server is off in every case. Its warden thread waits in
  // epoll_wait and its exit handler removes the socket file, and neither call
  // is in the filter's allowlist, so a program that sandboxes itself this
  // strictly must set admin_socket=off (docs/admin-api.md).
  std::string conf = "admin_socket=off";
  if (!memward_conf.empty()) conf += "," + memward_conf;
  options.env = {{"MEMWARD_CONF", conf}};

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

// "blocked syscall 334 in another thread" from trap mode becomes
// "334 (rseq) in another thread".
std::string name_blocked_syscall(const std::string& output) {
  const std::string marker = "blocked syscall ";
  std::size_t position = output.find(marker);
  if (position == std::string::npos) return "";
  char* end = nullptr;
  long number = std::strtol(output.c_str() + position + marker.size(), &end, 10);
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(number));
  std::string text = std::to_string(number) + " (" + (name != nullptr ? name : "unknown") + ")";
  free(name);
  return text + std::string(end, std::strcspn(end, "\n"));
}

// Runs the workload in trap mode until a blocked call is reported, because
// the call that killed the process may depend on timing.
std::string find_blocked_syscall(const std::string& memward_conf) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    SandboxRun trap = run_sandboxed("trap", true, 1000, memward_conf);
    std::string blocked = name_blocked_syscall(trap.result.stdout_text);
    if (!blocked.empty()) return blocked;
  }
  return "not reproduced in 5 runs with a SIGSYS handler";
}

bool killed_by(const RunResult& result, int signal_number) {
  return result.wait_status.has_value() && WIFSIGNALED(*result.wait_status) &&
         WTERMSIG(*result.wait_status) == signal_number;
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

class Sandbox : public testing::TestWithParam<SandboxCase> {};

TEST_P(Sandbox, ErrnoFilterKeepsAllocating) {
  std::string expected = control_checksum("errno");
  ASSERT_FALSE(expected.empty());

  // The pause after the workload lets a background thread of memward make
  // its next call, which fails with EPERM and must not take the process down.
  SandboxRun run = run_sandboxed("errno", true, 1000, GetParam().memward_conf);
  ASSERT_TRUE(run.result.exited_with(0)) << run.result.description;
  EXPECT_EQ(run.fields["filter"], "errno");
  ASSERT_EQ(run.libraries.size(), 1u)
      << preload_library_name() << " is not loaded\n" << run.result.description;
  EXPECT_EQ(run.fields["checksum"], expected) << run.result.description;
  std::cout << "threads before the filter: " << run.fields["threads_before_filter"] << "\n";
}

TEST_P(Sandbox, KillFilterSeesNoHiddenSyscall) {
  std::string expected = control_checksum("kill");
  ASSERT_FALSE(expected.empty());

  SandboxRun run = run_sandboxed("kill", true, 1000, GetParam().memward_conf);
  if (killed_by(run.result, SIGSYS)) {
    FAIL() << "a system call outside the allowed set killed the process; blocked syscall: "
           << find_blocked_syscall(GetParam().memward_conf) << "\n"
           << run.result.description;
  }
  ASSERT_TRUE(run.result.exited_with(0)) << run.result.description;
  EXPECT_EQ(run.fields["filter"], "kill");
  ASSERT_EQ(run.libraries.size(), 1u)
      << preload_library_name() << " is not loaded\n" << run.result.description;
  EXPECT_EQ(run.fields["checksum"], expected) << run.result.description;
  std::cout << "threads before the filter: " << run.fields["threads_before_filter"] << "\n";
}

// background_thread=true makes memward start jemalloc's purging thread
// before main, and the eager purge settings make every free of a large
// block reach madvise or munmap at once.
INSTANTIATE_TEST_SUITE_P(
    Settings, Sandbox,
    testing::Values(SandboxCase{"defaults", ""},
                    SandboxCase{"background_thread", "background_thread=true"},
                    SandboxCase{"eager_purge",
                                "dirty_decay=0ms,muzzy_decay=0ms,oversize_threshold=8m"}),
    [](const testing::TestParamInfo<SandboxCase>& info) { return info.param.name; });

}  // namespace
}  // namespace memward::integration
