#include "process_test_support.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <thread>

extern char** environ;

namespace memward_test {
namespace {

constexpr const char* kGdbPath = "/usr/bin/gdb";
constexpr const char* kTimeoutPath = "/usr/bin/timeout";

// State of the watchdog and the stack dumper, prepared in InstallWatchdog so
// that the SIGALRM handler neither allocates nor formats with stdio.
struct WatchdogState {
  char test_name[256] = "(between tests)";
  bool gdb_available = false;
  // gdb runs without LD_PRELOAD, so that a broken memward cannot stop it.
  std::vector<char*> gdb_environment;
  posix_spawn_file_actions_t gdb_file_actions;  // gdb's stdout goes to stderr
};
WatchdogState* watchdog_state = nullptr;

void FormatUnsigned(uint64_t value, char* buffer, size_t size) {
  char digits[24];
  size_t count = 0;
  do {
    digits[count++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && count < sizeof digits);
  size_t i = 0;
  while (count > 0 && i + 1 < size) buffer[i++] = digits[--count];
  buffer[i] = '\0';
}

void HandleWatchdogAlarm(int) {
  char seconds[24];
  FormatUnsigned(kTestWatchdogSeconds, seconds, sizeof seconds);
  WriteToStderr("");
  WriteToStderr("watchdog: the test below did not finish, so a deadlock is likely:");
  WriteToStderr(watchdog_state != nullptr ? watchdog_state->test_name : "(unknown test)");
  WriteToStderr("watchdog: time limit in seconds:");
  WriteToStderr(seconds);
  DumpThreadStacks(getpid());
  signal(SIGABRT, SIG_DFL);
  abort();
}

}  // namespace

void WriteToStderr(const char* message) {
  size_t length = strlen(message);
  while (length > 0) {
    ssize_t written = write(STDERR_FILENO, message, length);
    if (written <= 0) return;
    message += written;
    length -= static_cast<size_t>(written);
  }
  (void)!write(STDERR_FILENO, "\n", 1);
}

std::string LibraryContaining(const void* address) {
  Dl_info info{};
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

std::string LibraryDefining(const char* name) {
  return LibraryContaining(dlsym(RTLD_DEFAULT, name));
}

void AssertMemwardIsAllocator() {
  ASSERT_NE(dlsym(RTLD_DEFAULT, "memward_version"), nullptr)
      << "memward_version is not defined: memward is not loaded in this process";
  // Taking malloc's address in a PIE goes through the GOT, so it is the
  // definition the program's own calls reach.
  void* volatile malloc_address = reinterpret_cast<void*>(&malloc);
  ASSERT_NE(LibraryContaining(malloc_address).find("libmemward"), std::string::npos)
      << "malloc resolves to '" << LibraryContaining(malloc_address) << "'";
  ASSERT_NE(LibraryDefining("malloc").find("libmemward"), std::string::npos)
      << "dlsym(RTLD_DEFAULT, \"malloc\") resolves to '" << LibraryDefining("malloc") << "'";
}

MallctlFunction Mallctl() {
  static const MallctlFunction function =
      reinterpret_cast<MallctlFunction>(dlsym(RTLD_DEFAULT, "mallctl"));
  return function;
}

MallocStatsPrintFunction MallocStatsPrint() {
  static const MallocStatsPrintFunction function =
      reinterpret_cast<MallocStatsPrintFunction>(dlsym(RTLD_DEFAULT, "malloc_stats_print"));
  return function;
}

bool ReadSizeValue(const char* name, size_t* value) {
  if (Mallctl() == nullptr) return false;
  size_t length = sizeof *value;
  return Mallctl()(name, value, &length, nullptr, 0) == 0 && length == sizeof *value;
}

int RunMallctlCommand(const char* name) {
  if (Mallctl() == nullptr) return ENOENT;
  return Mallctl()(name, nullptr, nullptr, nullptr, 0);
}

bool RefreshStats() {
  if (Mallctl() == nullptr) return false;
  uint64_t epoch = 1;
  size_t length = sizeof epoch;
  return Mallctl()("epoch", &epoch, &length, &epoch, sizeof epoch) == 0;
}

HeapStats SettleAndReadHeapStats() {
  HeapStats stats;
  // memward_thread_flush also empties memward's own per-thread caches and
  // the thread's explicit jemalloc caches of tenant arenas, which
  // thread.tcache.flush does not reach.
  EXPECT_EQ(memward_thread_flush(), MEMWARD_OK) << "memward_thread_flush failed";
  EXPECT_EQ(RunMallctlCommand("thread.tcache.flush"), 0) << "mallctl thread.tcache.flush failed";
  EXPECT_EQ(RunMallctlCommand(kPurgeAllArenas), 0) << "mallctl " << kPurgeAllArenas << " failed";
  EXPECT_TRUE(RefreshStats()) << "mallctl epoch failed";
  const struct {
    const char* name;
    size_t* value;
  } fields[] = {
      {"stats.allocated", &stats.allocated}, {"stats.active", &stats.active},
      {"stats.metadata", &stats.metadata},   {"stats.resident", &stats.resident},
      {"stats.mapped", &stats.mapped},       {"stats.retained", &stats.retained},
  };
  for (const auto& field : fields) {
    EXPECT_TRUE(ReadSizeValue(field.name, field.value)) << "mallctl " << field.name << " failed";
  }
  return stats;
}

std::string FormatHeapStats(const HeapStats& stats) {
  char text[256];
  snprintf(text, sizeof text,
           "allocated %zu, active %zu, metadata %zu, resident %zu, mapped %zu, retained %zu",
           stats.allocated, stats.active, stats.metadata, stats.resident, stats.mapped,
           stats.retained);
  return text;
}

bool ChildOutcome::ExitedWithZero() const {
  return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string ChildOutcome::Describe() const {
  char text[128];
  if (timed_out) {
    snprintf(text, sizeof text, "did not exit within the deadline (stacks are on stderr)");
  } else if (WIFEXITED(status)) {
    snprintf(text, sizeof text, "exited with status %d", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    snprintf(text, sizeof text, "was killed by signal %d (%s)%s", WTERMSIG(status),
             strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
  } else {
    snprintf(text, sizeof text, "ended with wait status 0x%x", status);
  }
  return text;
}

ChildOutcome WaitForChild(pid_t pid, std::chrono::milliseconds deadline) {
  ChildOutcome outcome;
  const auto give_up_at = std::chrono::steady_clock::now() + deadline;
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    pid_t waited = waitpid(pid, &outcome.status, WNOHANG);
    if (waited == pid) return outcome;
    if (waited < 0 && errno != EINTR) {
      // Not our child, or already reaped: report it as a wait failure.
      outcome.status = -1;
      return outcome;
    }
    if (std::chrono::steady_clock::now() >= give_up_at) break;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(1));
  }
  char pid_text[24];
  FormatUnsigned(static_cast<uint64_t>(pid), pid_text, sizeof pid_text);
  WriteToStderr("child process did not exit in time; its stacks follow. pid:");
  WriteToStderr(pid_text);
  DumpThreadStacks(pid);
  kill(pid, SIGKILL);
  while (waitpid(pid, &outcome.status, 0) < 0 && errno == EINTR) {
  }
  outcome.timed_out = true;
  return outcome;
}

void DumpThreadStacks(pid_t pid) {
  if (watchdog_state == nullptr || !watchdog_state->gdb_available) {
    WriteToStderr("(gdb is not installed, so no stacks can be shown)");
    return;
  }
  char pid_text[24];
  FormatUnsigned(static_cast<uint64_t>(pid), pid_text, sizeof pid_text);
  char timeout_seconds[] = "60";
  char* arguments[] = {const_cast<char*>(kTimeoutPath),
                       timeout_seconds,
                       const_cast<char*>(kGdbPath),
                       const_cast<char*>("-nx"),
                       const_cast<char*>("-batch"),
                       const_cast<char*>("-p"),
                       pid_text,
                       const_cast<char*>("-ex"),
                       const_cast<char*>("thread apply all bt"),
                       nullptr};
  // glibc's posix_spawn does not run fork handlers and does not allocate,
  // so it works while the allocator is deadlocked.
  pid_t gdb_pid = -1;
  if (posix_spawn(&gdb_pid, kTimeoutPath, &watchdog_state->gdb_file_actions, nullptr, arguments,
                  watchdog_state->gdb_environment.data()) != 0) {
    WriteToStderr("(could not start gdb to show the stacks)");
    return;
  }
  int status = 0;
  while (waitpid(gdb_pid, &status, 0) < 0 && errno == EINTR) {
  }
}

void InstallWatchdog() {
  watchdog_state = new WatchdogState;
  watchdog_state->gdb_available = access(kGdbPath, X_OK) == 0 && access(kTimeoutPath, X_OK) == 0;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (strncmp(*entry, "LD_PRELOAD=", strlen("LD_PRELOAD=")) != 0) {
      watchdog_state->gdb_environment.push_back(*entry);
    }
  }
  watchdog_state->gdb_environment.push_back(nullptr);
  posix_spawn_file_actions_init(&watchdog_state->gdb_file_actions);
  posix_spawn_file_actions_adddup2(&watchdog_state->gdb_file_actions, STDERR_FILENO,
                                   STDOUT_FILENO);

  struct sigaction action {};
  action.sa_handler = HandleWatchdogAlarm;
  sigemptyset(&action.sa_mask);
  sigaction(SIGALRM, &action, nullptr);
}

void ArmWatchdog(const char* test_name) {
  if (watchdog_state == nullptr) return;
  if (test_name == nullptr) {
    alarm(0);
    return;
  }
  snprintf(watchdog_state->test_name, sizeof watchdog_state->test_name, "%s", test_name);
  alarm(kTestWatchdogSeconds);
}

void ArmChildAlarm() {
  signal(SIGALRM, SIG_DFL);
  alarm(static_cast<unsigned>(kChildDeadline.count()) * 2);
}

const char* HelperPath() { return MEMWARD_PROCESS_HELPER_PATH; }

HelperRun RunHelper(const std::vector<std::string>& arguments,
                    const std::vector<std::string>& extra_environment) {
  HelperRun run;
  // The helper's stderr goes to an anonymous file, read after it exits, so
  // a helper that writes a lot cannot block on a full pipe.
  int error_file = memfd_create("helper-stderr", MFD_CLOEXEC);
  if (error_file < 0) {
    run.outcome.status = -1;
    run.standard_error = "memfd_create failed: " + std::string(strerror(errno));
    return run;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, error_file, STDERR_FILENO);

  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(HelperPath()));
  for (const std::string& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);

  std::vector<char*> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const char* equals = strchr(*entry, '=');
    const size_t name_length = equals != nullptr ? static_cast<size_t>(equals - *entry) + 1 : 0;
    bool replaced = false;
    for (const std::string& extra : extra_environment) {
      if (name_length > 0 && extra.compare(0, name_length, *entry, name_length) == 0) replaced = true;
    }
    if (!replaced) environment.push_back(*entry);
  }
  for (const std::string& extra : extra_environment) {
    environment.push_back(const_cast<char*>(extra.c_str()));
  }
  environment.push_back(nullptr);

  pid_t pid = -1;
  int error = posix_spawn(&pid, HelperPath(), &actions, nullptr, argv.data(), environment.data());
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    close(error_file);
    run.outcome.status = -1;
    run.standard_error = std::string("posix_spawn of ") + HelperPath() + " failed: " + strerror(error);
    return run;
  }
  run.outcome = WaitForChild(pid, kChildDeadline);

  char buffer[4096];
  off_t offset = 0;
  for (;;) {
    ssize_t count = pread(error_file, buffer, sizeof buffer, offset);
    if (count <= 0) break;
    run.standard_error.append(buffer, static_cast<size_t>(count));
    offset += count;
  }
  close(error_file);
  return run;
}

// Both functions touch the same bytes: the first and last 64 and one in
// every 4 KiB. Filling every byte of the large blocks these tests churn
// would cost more time than the allocator under test.
namespace {
template <typename Visit>
void VisitPatternBytes(size_t size, Visit visit) {
  const size_t edge = size < 64 ? size : 64;
  for (size_t i = 0; i < edge; ++i) {
    visit(i);
    visit(size - 1 - i);
  }
  for (size_t i = 4096; i < size; i += 4096) visit(i);
}
unsigned char PatternByte(uint64_t seed, size_t index) {
  return static_cast<unsigned char>(seed * 131 + index * 7 + 1);
}
}  // namespace

void FillPattern(void* block, size_t size, uint64_t seed) {
  auto* bytes = static_cast<unsigned char*>(block);
  VisitPatternBytes(size, [&](size_t i) { bytes[i] = PatternByte(seed, i); });
}

bool CheckPattern(const void* block, size_t size, uint64_t seed) {
  const auto* bytes = static_cast<const unsigned char*>(block);
  bool intact = true;
  VisitPatternBytes(size, [&](size_t i) { intact = intact && bytes[i] == PatternByte(seed, i); });
  return intact;
}

void RegisterOrFindTenant(const char* name, const memward_tenant_options& options,
                          memward_tenant_id* id) {
  int status = memward_tenant_register(name, &options, id);
  if (status == MEMWARD_ERROR_EXISTS) status = memward_tenant_find(name, id);
  ASSERT_EQ(status, MEMWARD_OK) << "registering tenant " << name << ": "
                                << memward_strerror(status);
}

void ProcessTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "." + info->name();
  ArmWatchdog(name.c_str());
  ASSERT_NO_FATAL_FAILURE(AssertMemwardIsAllocator());
}

void ProcessTest::TearDown() { ArmWatchdog(nullptr); }

}  // namespace memward_test
