// Shared helpers of the process tests: the check that memward is the
// allocator, jemalloc statistics through mallctl, waiting for child
// processes with a deadline, and the watchdog that turns a hang into a
// failure with thread stacks.
//
// Every test binary here is built twice: linked against libmemward.so, and
// without it, run under LD_PRELOAD=libmemward_preload.so. jemalloc's API is
// therefore looked up with dlsym at run time, so that the same source links
// in both configurations.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "memward/memward.h"

namespace memward_test {

// Seconds a single test may run before the watchdog dumps every thread's
// stack and aborts the process. Each test takes seconds on a 2-core
// machine, and the margin is for a loaded CI machine, not for more work.
inline constexpr unsigned kTestWatchdogSeconds = 120;

// Time after which a child process is taken to be deadlocked. A child here
// does at most a few hundred milliseconds of work.
inline constexpr std::chrono::seconds kChildDeadline{30};

using MallctlFunction = int (*)(const char* name, void* old_value, size_t* old_length,
                                void* new_value, size_t new_length);
using MallocStatsPrintFunction = void (*)(void (*write_callback)(void*, const char*),
                                          void* callback_argument, const char* options);

// Returns the path of the shared object that contains `address`, or "" when
// dladdr finds none.
std::string LibraryContaining(const void* address);

// Returns the path of the shared object that defines the global symbol
// `name` as the dynamic linker resolves it for this process, or "" when the
// symbol is not defined.
std::string LibraryDefining(const char* name);

// Fails the current test (fatally) unless memward is the process's
// allocator: memward_version must be defined and malloc must resolve to a
// file named libmemward*. Call it through ASSERT_NO_FATAL_FAILURE.
void AssertMemwardIsAllocator();

// jemalloc's mallctl and malloc_stats_print as exported by memward.
// Both return nullptr when the process does not export them.
MallctlFunction Mallctl();
MallocStatsPrintFunction MallocStatsPrint();

// Reads a size_t statistic or setting such as "stats.allocated". Returns
// false when mallctl fails.
bool ReadSizeValue(const char* name, size_t* value);

// Runs a mallctl command that takes and returns nothing, such as
// "thread.tcache.flush" or "arena.4096.purge". Returns mallctl's error code.
int RunMallctlCommand(const char* name);

// Advances jemalloc's statistics epoch so that stats.* reflect the current
// heap. Returns false when mallctl fails.
bool RefreshStats();

// The mallctl name that purges every arena: MALLCTL_ARENAS_ALL is 4096 in
// jemalloc 5.3.
inline constexpr const char* kPurgeAllArenas = "arena.4096.purge";

// A snapshot of jemalloc's process-wide statistics, in bytes.
struct HeapStats {
  size_t allocated = 0;  // bytes in live allocations
  size_t active = 0;     // bytes in pages with live allocations
  size_t metadata = 0;   // allocator metadata
  size_t resident = 0;   // pages the allocator maps and has touched
  size_t mapped = 0;     // mapped in active extents
  size_t retained = 0;   // virtual memory kept for reuse, not resident
};

// Flushes this thread's caches (memward's and jemalloc's), purges every
// arena and returns the refreshed statistics. Fails the current test when a mallctl call fails.
HeapStats SettleAndReadHeapStats();

std::string FormatHeapStats(const HeapStats& stats);

// The outcome of waiting for a child process.
struct ChildOutcome {
  bool timed_out = false;
  int status = 0;  // as returned by waitpid, meaningful unless timed_out
  bool ExitedWithZero() const;
  std::string Describe() const;
};

// Waits for `pid` to exit. When it is still running after `deadline`, dumps
// its thread stacks to stderr, kills it with SIGKILL and reports a timeout.
ChildOutcome WaitForChild(pid_t pid, std::chrono::milliseconds deadline);

// Writes the stacks of every thread of `pid` to stderr with gdb, if gdb is
// installed. Safe to call from a signal handler once InstallWatchdog has run.
void DumpThreadStacks(pid_t pid);

// Readies the SIGALRM watchdog and the stack dumper. Call once from main,
// before any thread starts, after InitGoogleTest.
void InstallWatchdog();

// Arms the watchdog for the test named `test_name`, or disarms it when
// `test_name` is nullptr.
void ArmWatchdog(const char* test_name);

// In a forked child: restores SIGALRM's default action and arms alarm() so
// that an orphaned, deadlocked child ends by itself.
void ArmChildAlarm();

// Writes `message` and a newline to stderr with write(2), usable in a forked
// child and in a signal handler.
void WriteToStderr(const char* message);

// The outcome and the stderr output of one run of the helper program.
struct HelperRun {
  ChildOutcome outcome;
  std::string standard_error;
};

// Runs the helper program, process_helper, with `arguments` and this
// process's environment plus `extra_environment` ("NAME=value" entries,
// which replace variables of the same name), and waits for it with
// kChildDeadline.
HelperRun RunHelper(const std::vector<std::string>& arguments,
                    const std::vector<std::string>& extra_environment = {});

// The helper program built for the same configuration as this test binary.
const char* HelperPath();

// Writes a pattern derived from `seed` into the first and last 64 bytes of
// the block and one byte in every 4 KiB (so every page is touched), and
// checks those bytes.
void FillPattern(void* block, size_t size, uint64_t seed);
bool CheckPattern(const void* block, size_t size, uint64_t seed);

// A small, fast pseudo-random generator (xorshift64*), one per thread.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull | 1) {}
  uint64_t Next() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [low, high].
  size_t Between(size_t low, size_t high) { return low + Next() % (high - low + 1); }

 private:
  uint64_t state_;
};

// Registers the tenant `name` with `options`, or finds it when this process
// registered it before. Fails the current test when neither works; call it
// through ASSERT_NO_FATAL_FAILURE.
void RegisterOrFindTenant(const char* name, const memward_tenant_options& options,
                          memward_tenant_id* id);

// Base fixture of every process test: arms the watchdog and asserts that
// memward is the allocator before the test body runs, and disarms the
// watchdog afterwards.
class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
};

}  // namespace memward_test
