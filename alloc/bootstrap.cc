// Start-up from MEMWARD_CONF and the jemalloc options derived from it.
#include "alloc/bootstrap.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

#include "alloc/engine.h"
#include "alloc/thread_start.h"
#include "alloc/thread_state.h"
#include "base/log.h"

extern char** environ;

namespace memward::alloc {

constinit thread_local ThreadState t_thread_state __attribute__((tls_model("initial-exec")));

namespace {

enum BootstrapState : int { kNotStarted, kRunning, kDone };

// g_state moves kNotStarted -> kRunning -> kDone once. Everything below is
// written only by the thread that moved it to kRunning, and read only after
// an acquire load that saw kDone.
constinit std::atomic<int> g_state{kNotStarted};
constinit base::Settings g_settings;
constinit char g_engine_options[256] = {};
constinit size_t g_page_size = 4096;

constexpr char kConfVariable[] = "MEMWARD_CONF=";

// jemalloc's lg_extent_max_active_fit; BuildEngineOptions gives the reason.
constexpr int kLgExtentMaxActiveFit = 10;

// Returns MEMWARD_CONF's value, or nullptr. Set-uid and set-gid programs
// (AT_SECURE) ignore the environment, as the dynamic loader does.
const char* ReadConfText() {
  if (getauxval(AT_SECURE) != 0) return nullptr;
  if (environ == nullptr) return nullptr;
  const size_t prefix_length = sizeof(kConfVariable) - 1;
  for (char** entry = environ; *entry != nullptr; entry++) {
    if (strncmp(*entry, kConfVariable, prefix_length) == 0) return *entry + prefix_length;
  }
  return nullptr;
}

void ReportProblem(const base::SettingProblem& problem, void* context) {
  char message[base::kMaxLogMessage];
  base::FormatSettingProblem(problem, message, sizeof(message));
  base::Log("%s", message);
}

// Returns the number of automatic arenas when the narenas setting is 0: one
// per CPU that the process may run on.
//
// jemalloc 5.3's own default is four per CPU. Each arena keeps its own
// partly used slabs and dirty pages, so producers and consumers on
// different arenas hold more memory. Measured with bench/workloads on 2
// CPUs, the producer_consumer workload held 20 to 50 MiB of peak RSS with 8
// arenas and 22 to 25 MiB with 2. One arena held 15 to 18 MiB, but two
// threads allocating batches of 128 B to 16 KiB blocks then took 1.5 to 3.6
// times jemalloc's CPU time (malloc_micro, BM_MallocFreeBatch), against
// 1.0 to 1.1 times with 2 arenas.
int64_t DefaultArenaCount() {
  cpu_set_t cpus;
  int count = 0;
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0) count = CPU_COUNT(&cpus);
  if (count <= 0) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    count = online > 0 ? static_cast<int>(online) : 1;
  }
  return count;
}

// Builds the jemalloc option string. Background threads are never requested
// here: jemalloc would start them inside the first malloc, and a thread must
// not start before the program does (StartDeferredFeatures turns them on).
void BuildEngineOptions(const base::Settings& settings) {
  using base::SettingId;
  size_t length = 0;
  char* out = g_engine_options;
  const size_t capacity = sizeof(g_engine_options);
  int64_t narenas = settings.Get(SettingId::kNarenas);
  if (narenas == 0) narenas = DefaultArenaCount();
  length += base::Format(out + length, capacity - length, "narenas:%lld,",
                         static_cast<long long>(narenas));
  // jemalloc 5.3 sends requests above oversize_threshold (8 MiB by default) to
  // a dedicated arena whose decay is 0, so a loop of 5-25 MiB blocks is purged
  // and faulted in again on every iteration (about 6x glibc's time measured on
  // a 2-vCPU machine). memward's default of 0 turns that arena off. The
  // dirty_max_bytes bound (alloc/dirty_bound.h) limits instead how much of
  // the freed large blocks stays resident.
  length += base::Format(out + length, capacity - length,
                         "dirty_decay_ms:%lld,muzzy_decay_ms:%lld,oversize_threshold:%lld,",
                         static_cast<long long>(settings.Get(SettingId::kDirtyDecay)),
                         static_cast<long long>(settings.Get(SettingId::kMuzzyDecay)),
                         static_cast<long long>(settings.Get(SettingId::kOversizeThreshold)));
  // jemalloc 5.3 splits a dirty extent for a new slab or large block only
  // when the extent is at most 2^lg_extent_max_active_fit times the request
  // (default 6). Dirty extents are resident, and memward purges them within
  // dirty_decay, so leaving big ones unused while fresh pages are faulted in
  // only adds to the peak. With 10 (up to 1024 times, 4 MiB for a one-page
  // slab), the producer_consumer workload peaked at 14 to 21 MiB in 22 runs
  // on 2 CPUs, against 18 to 33 MiB in 14 runs with 6. The other workloads
  // did not change beyond their spread (bench/report_notes.md).
  length += base::Format(out + length, capacity - length, "lg_extent_max_active_fit:%d",
                         kLgExtentMaxActiveFit);
}

void RunBootstrap() {
  long page_size = sysconf(_SC_PAGESIZE);
  if (page_size > 0) g_page_size = static_cast<size_t>(page_size);

  int problems = base::ParseSettings(ReadConfText(), &g_settings, ReportProblem, nullptr);
  char order_message[base::kMaxLogMessage];
  if (base::ResetUnorderedPressureThresholds(&g_settings, order_message,
                                             sizeof(order_message)) > 0) {
    base::Log("%s", order_message);
    problems++;
  }
  if (problems > 0 && g_settings.GetBool(base::SettingId::kStrict)) {
    // The messages above name the value each problem would fall back to.
    base::Fatal("MEMWARD_CONF has %d invalid setting%s and strict=true: stopping instead of "
                "using the value%s reported above",
                problems, problems == 1 ? "" : "s", problems == 1 ? "" : "s");
  }
  BuildEngineOptions(g_settings);
  mwje_malloc_conf = g_engine_options;
  CreateWarmupExitKey();
}

}  // namespace

void Bootstrap() {
  if (__builtin_expect(g_state.load(std::memory_order_acquire) == kDone, 1)) return;
  int expected = kNotStarted;
  if (g_state.compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel)) {
    RunBootstrap();
    g_state.store(kDone, std::memory_order_release);
    return;
  }
  // Another thread is running it; it neither allocates nor blocks, so this
  // wait is short and cannot be on this thread.
  while (g_state.load(std::memory_order_acquire) != kDone) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

const base::Settings& CurrentSettings() {
  Bootstrap();
  return g_settings;
}

const char* EngineOptions() {
  Bootstrap();
  return g_engine_options;
}

size_t PageSize() {
  Bootstrap();
  return g_page_size;
}

namespace {

// Returns whether a thread of this process has named itself `name`.
bool ThreadNamed(const char* name) {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return false;
  bool found = false;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    char path[64];
    base::Format(path, sizeof(path), "/proc/self/task/%s/comm", entry->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char comm[32] = {};
    ssize_t length = read(fd, comm, sizeof(comm) - 1);
    close(fd);
    if (length > 0 && strncmp(comm, name, strlen(name)) == 0) found = true;
  }
  closedir(tasks);
  return found;
}

// jemalloc's background thread registers itself with the kernel (rseq, its
// name) after pthread_create returns. A program that installs a seccomp
// filter early in main could catch that registration and kill the process,
// so start-up waits, at most 1 s, until the thread has named itself.
void WaitForBackgroundThread() {
  for (int attempt = 0; attempt < 1000; attempt++) {
    if (ThreadNamed("jemalloc_bg_thd")) return;
    usleep(1000);
  }
  base::Log("background_thread=true: jemalloc's background thread did not start within 1 s");
}

}  // namespace

namespace {

// jemalloc 5.3 serves arena i from background thread i % max_background_threads
// and starts a thread only when its first arena is created, from another
// background thread and at that thread's next wake-up. memward creates arenas
// while the program runs (tenants, requests, the sampler), so with several
// threads a clone could come long after start-up, inside a program that has
// since installed a seccomp filter. One thread serves every arena and is
// running before the program's main.
bool EnableBackgroundThreads() {
  size_t one_thread = 1;
  if (mwje_mallctl("max_background_threads", nullptr, nullptr, &one_thread,
                   sizeof(one_thread)) != 0) {
    return false;
  }
  bool enable = true;
  return mwje_mallctl("background_thread", nullptr, nullptr, &enable, sizeof(enable)) == 0;
}

}  // namespace

void RestartDeferredFeaturesInChild() {
  if (g_state.load(std::memory_order_acquire) != kDone) return;
  if (!g_settings.GetBool(base::SettingId::kBackgroundThread)) return;
  if (!EnableBackgroundThreads()) {
    base::Log("background_thread=true: jemalloc could not restart its background threads "
              "after fork");
  }
}

void StoreRuntimeSetting(base::SettingId id, int64_t value) {
  if (!base::kSettingSpecs[static_cast<int>(id)].runtime) return;
  g_settings.Set(id, value);
}

namespace {

// stats_at_exit: a duplicate of descriptor 2 as it was when the library
// started, and the file it names. jemalloc's own stats_print option writes
// to whatever descriptor 2 is at exit. That is nothing in a program that
// closes stderr in an exit handler (coreutils do), and a data file in a
// program that closed stderr and then opened that file. memward keeps its
// own descriptor instead and prints only while it still names the file.
constinit int g_stderr_copy = -1;
constinit dev_t g_stderr_device = 0;
constinit ino_t g_stderr_inode = 0;

// The copy takes a number at or above this, away from the low numbers that
// programs expect open() to return.
constexpr int kStderrCopyLowest = 200;

bool IdentifyFile(int fd, dev_t* device, ino_t* inode) {
  struct stat status;
  if (fstat(fd, &status) != 0) return false;
  *device = status.st_dev;
  *inode = status.st_ino;
  return true;
}

void WriteToStderrCopy(void* context, const char* text) {
  size_t length = strlen(text);
  while (length > 0) {
    ssize_t written = write(g_stderr_copy, text, length);
    if (written <= 0) return;
    text += written;
    length -= static_cast<size_t>(written);
  }
}

// Prints unless the program closed the copy or reused its number for
// another file.
void PrintStatisticsAtExit() {
  dev_t device = 0;
  ino_t inode = 0;
  if (!IdentifyFile(g_stderr_copy, &device, &inode)) return;
  if (device != g_stderr_device || inode != g_stderr_inode) return;
  mwje_malloc_stats_print(WriteToStderrCopy, nullptr, nullptr);
}

// Registers PrintStatisticsAtExit when stats_at_exit is set and descriptor 2
// is open. Runs in the library's constructor, where atexit may allocate.
void RegisterStatisticsAtExit() {
  if (!g_settings.GetBool(base::SettingId::kStatsAtExit)) return;
  int copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, kStderrCopyLowest);
  if (copy < 0) copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return;
  if (!IdentifyFile(copy, &g_stderr_device, &g_stderr_inode)) {
    close(copy);
    return;
  }
  g_stderr_copy = copy;
  atexit(PrintStatisticsAtExit);
}

}  // namespace

void StartDeferredFeatures() {
  Bootstrap();
  RegisterStatisticsAtExit();
  if (!g_settings.GetBool(base::SettingId::kBackgroundThread)) return;
  if (!EnableBackgroundThreads()) {
    base::Log("background_thread=true: jemalloc could not start its background threads");
    return;
  }
  WaitForBackgroundThread();
}

}  // namespace memward::alloc
