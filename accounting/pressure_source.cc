#include "accounting/pressure_source.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <string>

namespace memward::accounting {
namespace {

// File-system magic numbers from <linux/magic.h>.
constexpr long kCgroupMagic = 0x27e0eb;
constexpr long kCgroup2Magic = 0x63677270;
constexpr long kProcMagic = 0x9fa0;

std::string ErrnoText(int error) {
  char buffer[128];
  return strerror_r(error, buffer, sizeof(buffer));
}

// Returns whether `fd` is on a file system with one of the two magics. A
// prepared tree is on an ordinary file system, where writing a trigger
// would only change the test's file and poll would never report an event.
bool IsOnFileSystem(int fd, long magic, long other_magic) {
  struct statfs info;
  if (fstatfs(fd, &info) != 0) return false;
  return static_cast<long>(info.f_type) == magic || static_cast<long>(info.f_type) == other_magic;
}

void CloseIfOpen(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// Writes all of `text`; returns false with errno set on failure.
bool WriteAll(int fd, const char* text, size_t length) {
  while (length > 0) {
    ssize_t written = write(fd, text, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return false;
    text += written;
    length -= static_cast<size_t>(written);
  }
  return true;
}

// Parses a decimal like "12.34" without the locale (a host program may set
// LC_NUMERIC to one whose decimal point is a comma, which strtod obeys).
bool ParsePercent(std::string_view text, double* value) {
  double result = 0;
  size_t i = 0;
  bool digits = false;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; i++) {
    result = result * 10 + (text[i] - '0');
    digits = true;
  }
  if (i < text.size() && text[i] == '.') {
    double scale = 0.1;
    for (i++; i < text.size() && text[i] >= '0' && text[i] <= '9'; i++) {
      result += (text[i] - '0') * scale;
      scale /= 10;
      digits = true;
    }
  }
  if (!digits) return false;
  *value = result;
  return true;
}

// Finds "avg10=<value>" on the line of `text` that starts with `kind`.
bool FindAvg10(std::string_view text, std::string_view kind, double* value) {
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (line.substr(0, kind.size()) != kind || line.size() == kind.size() ||
        line[kind.size()] != ' ') {
      continue;
    }
    size_t at = line.find(" avg10=");
    if (at == std::string_view::npos) return false;
    return ParsePercent(line.substr(at + 7), value);
  }
  return false;
}

}  // namespace

const char* PressureSourceName(PressureSourceKind kind) {
  switch (kind) {
    case PressureSourceKind::kPsiTrigger:
      return "psi_trigger";
    case PressureSourceKind::kV1PressureLevel:
      return "v1_pressure_level";
    case PressureSourceKind::kNone:
      break;
  }
  return "none";
}

bool PressureSource::OpenPsiTrigger(const std::string& pressure_path, uint32_t stall_us,
                                    uint32_t window_us, std::string* error) {
  Close();
  int fd = open(pressure_path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open " + pressure_path + " for writing: " + ErrnoText(errno);
    return false;
  }
  if (!IsOnFileSystem(fd, kCgroup2Magic, kProcMagic)) {
    close(fd);
    *error = pressure_path + " is not on cgroup2 or procfs, so it takes no PSI trigger";
    return false;
  }

  // The write handler of /proc/pressure files replaces the last byte
  // written with a NUL (psi_write in kernel/sched/psi.c), so the NUL is
  // written too. Without it, "1000000" would be read as "100000".
  std::string trigger = "some " + std::to_string(stall_us) + " " + std::to_string(window_us);
  if (!WriteAll(fd, trigger.c_str(), trigger.size() + 1)) {
    int saved = errno;
    close(fd);
    *error = "writing the trigger \"" + trigger + "\" to " + pressure_path +
             " failed: " + ErrnoText(saved);
    return false;
  }
  kind_ = PressureSourceKind::kPsiTrigger;
  event_fd_ = fd;
  path_ = pressure_path;
  return true;
}

bool PressureSource::OpenV1PressureLevel(const std::string& memory_dir, const char* level,
                                         std::string* error) {
  Close();
  std::string level_path = memory_dir + "/memory.pressure_level";
  std::string control_path = memory_dir + "/cgroup.event_control";
  int level_fd = open(level_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (level_fd < 0) {
    *error = "cannot open " + level_path + ": " + ErrnoText(errno);
    return false;
  }
  if (!IsOnFileSystem(level_fd, kCgroupMagic, kCgroupMagic)) {
    close(level_fd);
    *error = level_path + " is not on a cgroup v1 file system, so it takes no event";
    return false;
  }
  int event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd < 0) {
    *error = "eventfd failed: " + ErrnoText(errno);
    close(level_fd);
    return false;
  }
  int control_fd = open(control_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (control_fd < 0) {
    *error = "cannot open " + control_path + " for writing: " + ErrnoText(errno);
    close(event_fd);
    close(level_fd);
    return false;
  }

  std::string registration =
      std::to_string(event_fd) + " " + std::to_string(level_fd) + " " + level;
  bool registered = WriteAll(control_fd, registration.c_str(), registration.size());
  int saved = errno;
  close(control_fd);
  if (!registered) {
    *error = "writing \"" + registration + "\" to " + control_path + " failed: " + ErrnoText(saved);
    close(event_fd);
    close(level_fd);
    return false;
  }
  kind_ = PressureSourceKind::kV1PressureLevel;
  event_fd_ = event_fd;
  level_fd_ = level_fd;
  path_ = level_path;
  return true;
}

void PressureSource::Close() {
  CloseIfOpen(&event_fd_);
  CloseIfOpen(&level_fd_);
  kind_ = PressureSourceKind::kNone;
  path_.clear();
}

void PressureSource::Acknowledge() {
  if (kind_ != PressureSourceKind::kV1PressureLevel) return;
  uint64_t count;
  // Non-blocking: EAGAIN only means there was nothing to consume.
  while (read(event_fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
  }
}

uint32_t PressureSource::mask() const {
  switch (kind_) {
    case PressureSourceKind::kPsiTrigger:
      return EPOLLPRI;
    case PressureSourceKind::kV1PressureLevel:
      return EPOLLIN;
    case PressureSourceKind::kNone:
      break;
  }
  return 0;
}

bool ParsePsiAverages(std::string_view text, double* some_avg10, double* full_avg10) {
  *some_avg10 = -1;
  *full_avg10 = -1;
  if (!FindAvg10(text, "some", some_avg10)) {
    *some_avg10 = -1;
    return false;
  }
  if (!FindAvg10(text, "full", full_avg10)) *full_avg10 = -1;
  return true;
}

}  // namespace memward::accounting
