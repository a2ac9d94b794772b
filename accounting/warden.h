// The warden: memward's one background thread, `memward-warden`.
//
// It runs one event loop (epoll, with a timerfd for periodic tasks and an
// eventfd for wake-ups) over the services above alloc/: the cgroup monitor
// and pressure ladder, the leak detector's windows and the admin server. Once
// started it also runs jemalloc's time-based decay on every arena each
// second (alloc/thread_start.h), as jemalloc's background thread would.
// Services register file descriptors and periodic tasks; their callbacks
// always run on the warden thread, never inside malloc, in memward's own
// tenant scope (their allocations are memward's, not a user tenant's).
//
// Life cycle: the thread is started lazily by Start() (never from inside
// malloc), stopped by Stop(), and started again in a forked child by
// RestartInChild(). Registrations survive a fork and a stop; file
// descriptors that a service wants renewed in the child (an inherited
// listening socket, say) are re-created through the service's fork handler.
//
// Thread safety: Watch, Unwatch, AddPeriodic, Wake, WakeTask and
// RunTaskAfter may be called from any thread, including a callback on the
// warden thread. The registration table is guarded by one mutex that no
// allocation path takes.
#ifndef MEMWARD_ACCOUNTING_WARDEN_H_
#define MEMWARD_ACCOUNTING_WARDEN_H_

#include <stdint.h>

namespace memward::accounting {

// Called on the warden thread with the epoll events seen on `fd`.
using FdHandler = void (*)(int fd, uint32_t events, void* context);
// Called on the warden thread every period and after each Wake().
using PeriodicTask = void (*)(void* context);

class Warden {
 public:
  static Warden& Get();

  // Starts the thread if it is not running. Returns false when the thread or
  // its descriptors could not be created (reported once on stderr).
  bool Start();
  // Stops the thread and waits for it; registrations are kept.
  void Stop();
  bool IsRunning() const;

  // Watches `fd` for `events` (EPOLLIN, EPOLLPRI, ...). Returns false when
  // the table is full or epoll rejects the descriptor.
  bool Watch(int fd, uint32_t events, FdHandler handler, void* context);
  void Unwatch(int fd);
  // Unwatch for a forked child's fork handler, before RestartInChild: drops
  // `fd` from the table only, because the epoll set is still the parent's
  // and the parent's thread, which may have been calling the handler at
  // fork, does not exist here.
  void UnwatchInChild(int fd);

  // Runs `task` every `period_ms` milliseconds, counted from its last run;
  // the first run comes one period after the registration. Stores the
  // task's id in `task_id` when it is not null. Returns false when the
  // table is full.
  bool AddPeriodic(const char* name, int64_t period_ms, PeriodicTask task, void* context,
                   int* task_id = nullptr);

  // Makes the loop run every periodic task now. Safe to call from a
  // signal handler and from the allocation slow path: one write(2) on an
  // eventfd, no lock and no allocation.
  void Wake();
  // Makes the loop run the task `task_id` now, and no other task. As safe
  // as Wake: one atomic OR and one write(2).
  void WakeTask(int task_id);
  // Runs the task `task_id` once `delay_ns` from now, unless it is due
  // sooner; after that run its period starts again. Takes the table lock,
  // so it must not be called inside malloc.
  void RunTaskAfter(int task_id, int64_t delay_ns);

  // Called by the fork handlers: the child starts the thread again if the
  // parent had it running.
  void RestartInChild();
};

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_WARDEN_H_
