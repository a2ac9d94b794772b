// The kernel's memory-pressure notifications, as one file descriptor for the
// warden's epoll:
//   PSI trigger    cgroup2 memory.pressure (or /proc/pressure/memory) opened
//                  read-write with "some <stall us> <window us>" written to
//                  it. The kernel signals EPOLLPRI when tasks stalled on
//                  memory for longer than the stall within one window.
//                  Writing needs Linux 5.2 and write access; unprivileged
//                  triggers need 6.4 and a window that is a multiple of 2 s.
//   v1 pressure    an eventfd registered for memory.pressure_level through
//   level          cgroup.event_control ("<eventfd> <pressure_level fd>
//                  <level>"); EPOLLIN, and the eventfd's counter must be
//                  read to rearm it.
// When neither can be opened the monitor falls back to reading the PSI
// averages on every Read().
#ifndef MEMWARD_ACCOUNTING_PRESSURE_SOURCE_H_
#define MEMWARD_ACCOUNTING_PRESSURE_SOURCE_H_

#include <stdint.h>

#include <string>
#include <string_view>

namespace memward::accounting {

enum class PressureSourceKind : uint8_t {
  kNone,             // no descriptor; PSI averages (if any) are polled
  kPsiTrigger,       // EPOLLPRI on a memory.pressure file
  kV1PressureLevel,  // EPOLLIN on an eventfd bound to memory.pressure_level
};

const char* PressureSourceName(PressureSourceKind kind);

// Owns the descriptors of one pressure notification. Not thread-safe: the
// cgroup monitor guards it with its own mutex.
class PressureSource {
 public:
  PressureSource() = default;
  PressureSource(const PressureSource&) = delete;
  PressureSource& operator=(const PressureSource&) = delete;
  ~PressureSource() { Close(); }

  // Opens a PSI trigger on `pressure_path` for `stall_us` microseconds of
  // "some" stall within `window_us`. On failure returns false, stores the
  // reason (with errno's text) in `*error` and leaves the source closed.
  bool OpenPsiTrigger(const std::string& pressure_path, uint32_t stall_us, uint32_t window_us,
                      std::string* error);

  // Registers an eventfd for `level` ("low", "medium" or "critical") on the
  // v1 memory cgroup `memory_dir`. On failure as OpenPsiTrigger.
  bool OpenV1PressureLevel(const std::string& memory_dir, const char* level, std::string* error);

  // Closes the descriptors; the source is kNone afterwards.
  void Close();

  // Rearms after an event: reads the eventfd's counter (v1). A PSI trigger
  // needs nothing, because the kernel clears its event when epoll polls it.
  void Acknowledge();

  PressureSourceKind kind() const { return kind_; }
  int fd() const { return event_fd_; }
  // EPOLLPRI for a PSI trigger, EPOLLIN for an eventfd, 0 for kNone.
  uint32_t mask() const;
  // The file the notification is bound to, for GET /cgroup.
  const std::string& path() const { return path_; }

 private:
  PressureSourceKind kind_ = PressureSourceKind::kNone;
  int event_fd_ = -1;
  // v1: the memory.pressure_level descriptor named in cgroup.event_control;
  // the registration lasts while it stays open.
  int level_fd_ = -1;
  std::string path_;
};

// Parses the "some" and "full" avg10 values (percent) from the text of a
// PSI file. A missing "full" line (older /proc/pressure/memory) leaves
// `*full_avg10` at -1. Returns false when no "some avg10=" is found.
bool ParsePsiAverages(std::string_view text, double* some_avg10, double* full_avg10);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PRESSURE_SOURCE_H_
