// The warden thread's event loop: one epoll set over a timerfd (armed for
// the earliest task due), an eventfd (Wake, WakeTask) and the descriptors
// services watch.
//
// Locking: g_lock guards the watch and task tables and the descriptors. It
// is taken by Start, Stop, Watch, Unwatch, AddPeriodic and the loop while it
// copies a table, never around a callback, and no allocation path takes it,
// so a callback may allocate and may call Watch or AddPeriodic. Across fork
// it is taken in the prepare handler before the registry lock (LockForFork)
// and released in both processes. Wake and WakeTask touch only atomics: the
// eventfd number and the mask of woken tasks.
#include "accounting/warden.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "accounting/tenant.h"
#include "accounting/warden_internal.h"
#include "alloc/arena_registry.h"
#include "alloc/scope.h"
#include "alloc/thread_start.h"
#include "base/log.h"
#include "base/mutex_lock.h"

namespace memward::accounting {
namespace {

constexpr int kMaxWatches = 32;
constexpr int kMaxTasks = 16;
// How often the arena decay task runs: jemalloc purges by its decay curve,
// so a period well under the default dirty_decay of 1 s is not needed.
constexpr int64_t kArenaDecayPeriodMs = 1000;
constexpr int kMaxEventsPerWait = 16;
constexpr char kThreadName[] = "memward-warden";

struct WatchEntry {
  int fd = -1;
  uint32_t events = 0;
  FdHandler handler = nullptr;
  void* context = nullptr;
};

struct TaskEntry {
  char name[32] = {};
  int64_t period_ms = 0;
  PeriodicTask task = nullptr;
  void* context = nullptr;
  int64_t next_due_ns = 0;  // CLOCK_MONOTONIC; written only by the warden thread
};

// Guarded by g_lock.
constinit pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
constinit WatchEntry g_watches[kMaxWatches];
constinit TaskEntry g_tasks[kMaxTasks];
constinit int g_task_count = 0;
constinit int g_epoll_fd = -1;
constinit int g_timer_fd = -1;
constinit pthread_t g_thread;
// Set by Stop; read by the loop after each wait.
constinit std::atomic<bool> g_stop_requested{false};
constinit std::atomic<bool> g_running{false};
// The eventfd that Wake writes to, -1 before the first Start. Read without
// the lock (Wake runs in signal handlers and the allocation slow path).
constinit std::atomic<int> g_event_fd{-1};
// The device and inode of the eventfd, so that a wake-up never writes into
// a file of the program's that took over the eventfd's number after the
// program closed it (a daemon that closes every descriptor after fork).
constinit std::atomic<uint64_t> g_event_device{0};
constinit std::atomic<uint64_t> g_event_inode{0};
// The fd whose handler runs now on the warden thread, -1 for none, so that
// Unwatch from another thread can wait for that call to return.
constinit std::atomic<int> g_dispatching_fd{-1};
constinit std::atomic<bool> g_was_running_at_fork{false};
// Set in a forked child, whose program may close every descriptor it
// inherited, the warden's new ones too (a daemon). Closing an epoll set does
// not wake a thread that waits on it, so the child's warden waits at most
// kChildWaitMs at a time and checks its descriptors after each wait.
constinit std::atomic<bool> g_in_forked_child{false};
constexpr int kChildWaitMs = 500;
// Bit i set: task i was woken by WakeTask (Wake sets every bit). The loop
// takes the whole mask after each wait.
constinit std::atomic<uint32_t> g_woken_tasks{0};
static_assert(kMaxTasks <= 32, "g_woken_tasks has one bit per task");

base::LogLimit g_error_log_limit(8);


int64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

// Returns the earliest time a task is due, or 0 when no task is registered.
// Requires g_lock.
int64_t EarliestDueNsLocked() {
  int64_t earliest = 0;
  for (int i = 0; i < g_task_count; i++) {
    const int64_t due = g_tasks[i].next_due_ns > 0 ? g_tasks[i].next_due_ns : 1;
    if (earliest == 0 || due < earliest) earliest = due;
  }
  return earliest;
}

// Arms the timerfd, once, for the earliest task due; a time already past
// fires at once. Requires g_lock.
void ArmTimerLocked() {
  if (g_timer_fd < 0) return;
  const int64_t due_ns = EarliestDueNsLocked();
  itimerspec spec = {};
  spec.it_value.tv_sec = due_ns / 1000000000;
  spec.it_value.tv_nsec = due_ns % 1000000000;
  if (timerfd_settime(g_timer_fd, TFD_TIMER_ABSTIME, &spec, nullptr) != 0 &&
      g_error_log_limit.Allow()) {
    base::Log("warden: timerfd_settime failed (errno %d); periodic tasks will not run", errno);
  }
}

bool AddToEpollLocked(const WatchEntry& entry) {
  epoll_event event = {};
  event.events = entry.events;
  event.data.fd = entry.fd;
  if (epoll_ctl(g_epoll_fd, EPOLL_CTL_ADD, entry.fd, &event) == 0) return true;
  if (errno == EEXIST) return epoll_ctl(g_epoll_fd, EPOLL_CTL_MOD, entry.fd, &event) == 0;
  return false;
}

// Closes the epoll set and the timerfd. The eventfd stays open for the life
// of the process, because a concurrent Wake may have loaded its number: if
// it were closed, that write could land in a file opened since.
void CloseDescriptorsLocked() {
  if (g_epoll_fd >= 0) close(g_epoll_fd);
  if (g_timer_fd >= 0) close(g_timer_fd);
  g_epoll_fd = -1;
  g_timer_fd = -1;
}

// Creates the epoll set, the timerfd and (once) the eventfd, and adds them
// and every registered watch to the set. Requires g_lock.
bool CreateDescriptorsLocked() {
  g_epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  g_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  int event_fd = g_event_fd.load(std::memory_order_acquire);
  if (event_fd < 0) {
    event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct stat info;
    if (event_fd >= 0 && fstat(event_fd, &info) == 0) {
      g_event_device.store(info.st_dev, std::memory_order_relaxed);
      g_event_inode.store(info.st_ino, std::memory_order_relaxed);
    }
    g_event_fd.store(event_fd, std::memory_order_release);
  }
  if (g_epoll_fd < 0 || g_timer_fd < 0 || event_fd < 0) return false;
  if (!AddToEpollLocked(WatchEntry{g_timer_fd, EPOLLIN, nullptr, nullptr})) return false;
  if (!AddToEpollLocked(WatchEntry{event_fd, EPOLLIN, nullptr, nullptr})) return false;
  for (WatchEntry& entry : g_watches) {
    if (entry.fd < 0 || AddToEpollLocked(entry)) continue;
    // EBADF: a service's fork handler closed its descriptor in the child
    // and watches a new one itself.
    if (errno != EBADF && g_error_log_limit.Allow()) {
      base::Log("warden: epoll rejected watched fd %d (errno %d); it is no longer watched",
                entry.fd, errno);
    }
    entry = WatchEntry{};
  }
  ArmTimerLocked();
  return true;
}

void DrainCounter(int fd) {
  uint64_t count = 0;
  while (read(fd, &count, sizeof(count)) == sizeof(count)) {
  }
}

// Runs the tasks that are due and those whose bit is set in `woken`, then
// arms the timer for the next. The table is copied under the lock and the
// tasks run without it, so a task may call RunTaskAfter.
void RunTasks(uint32_t woken) {
  TaskEntry due[kMaxTasks];
  int due_count = 0;
  const int64_t now = MonotonicNs();
  {
    base::MutexLock guard(&g_lock);
    for (int i = 0; i < g_task_count; i++) {
      TaskEntry& entry = g_tasks[i];
      const bool is_woken = (woken >> i & 1) != 0;
      if (!is_woken && entry.next_due_ns > now) continue;
      entry.next_due_ns = now + entry.period_ms * 1000000;
      due[due_count++] = entry;
    }
  }
  for (int i = 0; i < due_count; i++) due[i].task(due[i].context);
  base::MutexLock guard(&g_lock);
  ArmTimerLocked();
}

// Returns whether `fd` is still the eventfd that CreateDescriptorsLocked
// made, or another anonymous-inode file (an epoll set, a timerfd), which
// share its device and inode: fstat cannot tell those apart.
// Async-signal-safe.
bool IsOwnEventFd(int fd) {
  struct stat info;
  return fstat(fd, &info) == 0 &&
         info.st_dev == g_event_device.load(std::memory_order_relaxed) &&
         info.st_ino == g_event_inode.load(std::memory_order_relaxed);
}

// Makes new descriptors after the program closed the warden's epoll set
// (epoll_wait fails with EBADF, or EINVAL once the number names another
// file). The old numbers are forgotten, never closed: they may be the
// program's files now. Returns whether the warden can go on.
bool RecreateClosedDescriptors() {
  base::MutexLock guard(&g_lock);
  if (g_error_log_limit.Allow()) {
    base::Log("warden: its epoll descriptor %d was closed by the program; making new ones",
              g_epoll_fd);
  }
  g_epoll_fd = -1;
  g_timer_fd = -1;
  const int event_fd = g_event_fd.load(std::memory_order_acquire);
  if (event_fd >= 0 && !IsOwnEventFd(event_fd)) g_event_fd.store(-1, std::memory_order_release);
  return CreateDescriptorsLocked();
}

// Returns whether the epoll set and the timerfd are still open as
// anonymous-inode files. Only the loop thread replaces them.
// NOTE: a program may close them and create an epoll set, eventfd or
// timerfd of its own under the same number before the next check. That is
// not detected, and the warden then waits on the program's descriptor.
bool DescriptorsStillOpen() { return IsOwnEventFd(g_epoll_fd) && IsOwnEventFd(g_timer_fd); }

// Calls the handler of a watched fd, if it is still watched.
void Dispatch(int fd, uint32_t events) {
  WatchEntry entry;
  {
    base::MutexLock guard(&g_lock);
    for (const WatchEntry& candidate : g_watches) {
      if (candidate.fd == fd) entry = candidate;
    }
    if (entry.fd < 0) return;
    g_dispatching_fd.store(fd, std::memory_order_release);
  }
  entry.handler(fd, events, entry.context);
  g_dispatching_fd.store(-1, std::memory_order_release);
}

void RunLoop() {
  epoll_event events[kMaxEventsPerWait];
  while (!g_stop_requested.load(std::memory_order_acquire)) {
    const bool in_child = g_in_forked_child.load(std::memory_order_relaxed);
    if (in_child && !DescriptorsStillOpen()) RecreateClosedDescriptors();
    int ready = epoll_wait(g_epoll_fd, events, kMaxEventsPerWait, in_child ? kChildWaitMs : -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      if ((errno == EBADF || errno == EINVAL) && RecreateClosedDescriptors()) continue;
      if (g_error_log_limit.Allow()) base::Log("warden: epoll_wait failed (errno %d)", errno);
      usleep(10000);
      continue;
    }
    bool run_tasks = false;
    for (int i = 0; i < ready; i++) {
      const int fd = events[i].data.fd;
      if (fd == g_event_fd.load(std::memory_order_relaxed)) {
        DrainCounter(fd);
        run_tasks = true;
      } else if (fd == g_timer_fd) {
        DrainCounter(fd);
        run_tasks = true;
      } else {
        Dispatch(fd, events[i].events);
      }
    }
    if (g_stop_requested.load(std::memory_order_acquire)) break;
    // A WakeTask whose write lands after this exchange leaves the eventfd
    // readable, so its task runs in the next round.
    if (run_tasks) RunTasks(g_woken_tasks.exchange(0, std::memory_order_acq_rel));
  }
}

void* ThreadMain(void*) {
  pthread_setname_np(pthread_self(), kThreadName);
  alloc::MarkCallingThreadAsWarden();
  // Callbacks allocate as memward, not as the tenant of whichever thread
  // started the warden.
  uint32_t slot = alloc::MemwardArenaSlot();
  if (slot != 0) alloc::EnterScope(kMemwardTenant, slot, 0);
  RunLoop();
  return nullptr;
}

// Starts the thread with every signal blocked, so that signals sent to the
// process are delivered to the program's threads. Requires g_lock.
bool StartThreadLocked() {
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  int error = pthread_create(&g_thread, nullptr, ThreadMain, nullptr);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (error != 0) {
    base::Log("warden: pthread_create failed (error %d); memory pressure is not watched", error);
    return false;
  }
  return true;
}

}  // namespace

Warden& Warden::Get() {
  static constinit Warden warden;
  return warden;
}

namespace {

bool StartWardenThread();

void DecayArenasTask(void*) { alloc::DecayArenas(); }

constinit std::atomic<int> g_decay_task_id{-1};

// Runs the arena decay task soon; alloc calls it when a program's second
// thread starts, inside malloc, so it only wakes the warden.
void RequestArenaDecay() { Warden::Get().WakeTask(g_decay_task_id.load(std::memory_order_acquire)); }

// Registers the arena decay task the first time the warden starts
// (alloc/thread_start.h). Its first run comes after one period, or as soon
// as the program starts a second thread. So short-lived threads get the
// arena hold early, and the warden of a single-threaded program makes no
// jemalloc call in its first second. Such a call would assign the warden an
// arena and make jemalloc create arena 1 (about 100 KiB resident, rss_probe).
// Takes g_lock through AddPeriodic.
void AddArenaDecayTaskOnce() {
  static std::atomic<bool> added{false};
  if (added.exchange(true, std::memory_order_acq_rel)) return;
  int task_id = -1;
  if (!Warden::Get().AddPeriodic("arena decay", kArenaDecayPeriodMs, DecayArenasTask, nullptr,
                                 &task_id)) {
    base::Log("warden: the task table is full; idle arenas decay only when used again");
    return;
  }
  g_decay_task_id.store(task_id, std::memory_order_release);
  alloc::SetArenaDecayRequest(RequestArenaDecay);
}

}  // namespace

bool Warden::Start() {
  // memward_pressure_get calls this each time; a running warden costs one
  // load, not the lock.
  if (g_running.load(std::memory_order_acquire)) return true;
  if (!StartWardenThread()) return false;
  AddArenaDecayTaskOnce();
  return true;
}

namespace {

// Creates the descriptors and the thread. Returns whether the warden runs.
bool StartWardenThread() {
  base::MutexLock guard(&g_lock);
  if (g_running.load(std::memory_order_acquire)) return true;
  g_stop_requested.store(false, std::memory_order_release);
  if (!CreateDescriptorsLocked()) {
    // ENOSYS and EPERM come from a seccomp sandbox (man-db runs its
    // formatters in one), where a message on stderr would end up in the
    // host's output; the warden then stays off without a word.
    if (errno != ENOSYS && errno != EPERM) {
      base::Log("warden: creating its epoll, timerfd or eventfd failed (errno %d); "
                "memory pressure is not watched", errno);
    }
    CloseDescriptorsLocked();
    return false;
  }
  if (!StartThreadLocked()) {
    CloseDescriptorsLocked();
    return false;
  }
  g_running.store(true, std::memory_order_release);
  return true;
}

}  // namespace

void Warden::Stop() {
  pthread_t thread;
  {
    base::MutexLock guard(&g_lock);
    if (!g_running.load(std::memory_order_acquire)) return;
    if (pthread_equal(pthread_self(), g_thread)) {
      base::Log("warden: Stop called from a warden callback; ignored (it cannot join itself)");
      return;
    }
    g_stop_requested.store(true, std::memory_order_release);
    thread = g_thread;
  }
  Wake();
  pthread_join(thread, nullptr);
  base::MutexLock guard(&g_lock);
  CloseDescriptorsLocked();
  g_running.store(false, std::memory_order_release);
}

bool Warden::IsRunning() const { return g_running.load(std::memory_order_acquire); }

bool Warden::Watch(int fd, uint32_t events, FdHandler handler, void* context) {
  if (fd < 0 || handler == nullptr) return false;
  base::MutexLock guard(&g_lock);
  WatchEntry* free_entry = nullptr;
  for (WatchEntry& entry : g_watches) {
    if (entry.fd == fd) free_entry = &entry;  // a new watch of `fd` replaces the old one
    if (free_entry == nullptr && entry.fd < 0) free_entry = &entry;
  }
  if (free_entry == nullptr) return false;
  WatchEntry entry{fd, events, handler, context};
  if (g_epoll_fd >= 0 && !AddToEpollLocked(entry)) return false;
  *free_entry = entry;
  return true;
}

void Warden::Unwatch(int fd) {
  {
    base::MutexLock guard(&g_lock);
    for (WatchEntry& entry : g_watches) {
      if (entry.fd == fd) entry = WatchEntry{};
    }
    if (g_epoll_fd >= 0) epoll_ctl(g_epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
  }
  // A handler for `fd` may be running; wait for it unless this is that
  // handler (Unwatch from inside the callback).
  if (g_running.load(std::memory_order_acquire) && pthread_equal(pthread_self(), g_thread)) {
    return;
  }
  while (g_dispatching_fd.load(std::memory_order_acquire) == fd) usleep(100);
}

void Warden::UnwatchInChild(int fd) {
  base::MutexLock guard(&g_lock);
  for (WatchEntry& entry : g_watches) {
    if (entry.fd == fd) entry = WatchEntry{};
  }
}

bool Warden::AddPeriodic(const char* name, int64_t period_ms, PeriodicTask task, void* context,
                         int* task_id) {
  if (task == nullptr || period_ms <= 0) return false;
  base::MutexLock guard(&g_lock);
  if (g_task_count == kMaxTasks) return false;
  TaskEntry& entry = g_tasks[g_task_count];
  entry = TaskEntry{};
  if (name != nullptr) strncpy(entry.name, name, sizeof(entry.name) - 1);
  entry.period_ms = period_ms;
  entry.task = task;
  entry.context = context;
  entry.next_due_ns = MonotonicNs() + period_ms * 1000000;
  if (task_id != nullptr) *task_id = g_task_count;
  g_task_count++;
  ArmTimerLocked();
  return true;
}

namespace {

// Adds 1 to the eventfd's counter, unless its number names another file
// now. EAGAIN means the counter is full and a wake-up is pending anyway.
void SignalEventFd() {
  int fd = g_event_fd.load(std::memory_order_acquire);
  if (fd < 0 || !IsOwnEventFd(fd)) return;
  const uint64_t increment = 1;
  [[maybe_unused]] ssize_t written = write(fd, &increment, sizeof(increment));
}

}  // namespace

void Warden::Wake() {
  g_woken_tasks.store(~uint32_t{0}, std::memory_order_release);
  SignalEventFd();
}

void Warden::WakeTask(int task_id) {
  if (task_id < 0 || task_id >= kMaxTasks) return;
  g_woken_tasks.fetch_or(uint32_t{1} << task_id, std::memory_order_acq_rel);
  SignalEventFd();
}

void Warden::RunTaskAfter(int task_id, int64_t delay_ns) {
  base::MutexLock guard(&g_lock);
  if (task_id < 0 || task_id >= g_task_count) return;
  TaskEntry& entry = g_tasks[task_id];
  const int64_t due = MonotonicNs() + (delay_ns > 0 ? delay_ns : 0);
  if (entry.next_due_ns <= due) return;
  entry.next_due_ns = due;
  ArmTimerLocked();
}

void Warden::RestartInChild() {
  if (!g_was_running_at_fork.load(std::memory_order_acquire)) return;
  g_in_forked_child.store(true, std::memory_order_relaxed);
  {
    base::MutexLock guard(&g_lock);
    // The parent's thread does not exist here, and the inherited epoll set
    // and eventfd are shared with the parent: close this process's copies.
    // Only this thread runs in the child yet, so no Wake can race the close.
    CloseDescriptorsLocked();
    int event_fd = g_event_fd.exchange(-1, std::memory_order_acq_rel);
    if (event_fd >= 0) close(event_fd);
    g_running.store(false, std::memory_order_release);
    g_dispatching_fd.store(-1, std::memory_order_release);
  }
  Start();
}

void LockWardenForFork() {
  pthread_mutex_lock(&g_lock);
  g_was_running_at_fork.store(g_running.load(std::memory_order_acquire),
                              std::memory_order_release);
}

void UnlockWardenAfterFork() { pthread_mutex_unlock(&g_lock); }

bool IsWardenThread() {
  return g_running.load(std::memory_order_acquire) && pthread_equal(pthread_self(), g_thread);
}

}  // namespace memward::accounting
