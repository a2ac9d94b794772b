// The cgroup monitor and the pressure sources on this machine's real cgroup
// files. Discovery must agree with what the kernel reports, and the kernel's
// notifications are opened where the kernel allows them (or the fallback is
// reported).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "accounting/cgroup_files.h"
#include "accounting/cgroup_monitor.h"
#include "accounting/pressure_source.h"
#include "tests/unit/cgroup_tree.h"

namespace memward::accounting {
namespace {

using testing::LogCapture;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr long kCgroupMagic = 0x27e0eb;
constexpr long kCgroup2Magic = 0x63677270;

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

uint64_t ReadNumber(const std::string& path) {
  uint64_t value = 0;
  ParseByteCount(ReadWhole(path), true, &value);
  return value;
}

long FileSystemMagic(const std::string& path) {
  struct statfs info;
  if (statfs(path.c_str(), &info) != 0) return 0;
  return static_cast<long>(info.f_type);
}

// The memory cgroup path from the kernel's /proc/self/cgroup, read here
// without memward's parser: the v1 memory line, else the v2 line.
std::string KernelMemoryPath() {
  std::istringstream lines(ReadWhole("/proc/self/cgroup"));
  std::string line, v2_path;
  while (std::getline(lines, line)) {
    size_t first = line.find(':');
    size_t second = line.find(':', first + 1);
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (("," + controllers + ",").find(",memory,") != std::string::npos) return path;
    if (line.compare(0, 3, "0::") == 0) v2_path = path;
  }
  return v2_path;
}

uint64_t Physical() {
  return static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
         static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

class CgroupLive : public ::testing::Test {
 protected:
  void SetUp() override {
    if (KernelMemoryPath().empty()) GTEST_SKIP() << "no memory cgroup on this machine";
    ASSERT_TRUE(monitor_.Discover("/", "/proc/self"));
    layout_ = monitor_.layout();
  }

  std::string UsageFile() const {
    return layout_.memory_dir + (layout_.memory_version == CgroupVersion::kV1
                                     ? "/memory.usage_in_bytes"
                                     : "/memory.current");
  }

  CgroupMonitor monitor_;
  CgroupLayout layout_;
};

TEST_F(CgroupLive, LayoutMatchesKernel) {
  EXPECT_EQ(layout_.memory_cgroup_path, KernelMemoryPath());
  struct stat info;
  ASSERT_EQ(stat(layout_.memory_dir.c_str(), &info), 0) << layout_.memory_dir;
  EXPECT_TRUE(S_ISDIR(info.st_mode));

  long magic = FileSystemMagic(layout_.memory_dir);
  if (layout_.memory_version == CgroupVersion::kV1) {
    EXPECT_EQ(magic, kCgroupMagic);
  } else {
    EXPECT_EQ(magic, kCgroup2Magic);
  }
  if (layout_.hybrid) {
    EXPECT_EQ(FileSystemMagic(layout_.pressure_dir), kCgroup2Magic);
  }
  EXPECT_EQ(access(UsageFile().c_str(), R_OK), 0) << UsageFile();
}

TEST_F(CgroupLive, UsageMatchesKernelFile) {
  // Other processes share the cgroup, so usage moves between the reads: the
  // reading must lie within the two direct reads, widened by 64 MiB.
  uint64_t before = ReadNumber(UsageFile());
  CgroupReading reading = monitor_.Read();
  uint64_t after = ReadNumber(UsageFile());
  ASSERT_TRUE(reading.ok);
  uint64_t low = std::min(before, after);
  uint64_t high = std::max(before, after);
  EXPECT_GE(reading.usage_bytes + 64 * kMiB, low);
  EXPECT_LE(reading.usage_bytes, high + 64 * kMiB);
  EXPECT_LE(reading.working_set_bytes, reading.usage_bytes);
}

TEST_F(CgroupLive, LimitMatchesKernel) {
  CgroupReading reading = monitor_.Read();
  EXPECT_EQ(reading.physical_memory_bytes / kMiB, Physical() / kMiB);
  if (layout_.memory_version == CgroupVersion::kV1) {
    // The kernel's own value for the smallest limit over the ancestors.
    uint64_t hierarchical = 0;
    ASSERT_TRUE(FindKeyedValue(ReadWhole(layout_.memory_dir + "/memory.stat"),
                               "hierarchical_memory_limit", &hierarchical));
    EXPECT_EQ(reading.limit_bytes, std::min(hierarchical, reading.physical_memory_bytes));
  } else {
    uint64_t own = ReadNumber(layout_.memory_dir + "/memory.max");
    EXPECT_LE(reading.limit_bytes, std::min(own, reading.physical_memory_bytes));
  }
  EXPECT_EQ(reading.limit_from_cgroup, reading.limit_bytes < reading.physical_memory_bytes);
}

TEST_F(CgroupLive, PressureSourceOpensOrReportsFallback) {
  LogCapture log;
  CgroupMonitor monitor;
  monitor.Discover("/", "/proc/self");
  PressureSourceKind kind = monitor.pressure_source();
  if (kind == PressureSourceKind::kNone) {
    EXPECT_EQ(monitor.pressure_event_fd(), -1);
    EXPECT_EQ(log.Count({"pressure source", "no kernel notification"}), 1);
    return;
  }
  EXPECT_GE(monitor.pressure_event_fd(), 0);
  EXPECT_FALSE(monitor.pressure_source_path().empty());
  uint32_t expected_mask = kind == PressureSourceKind::kPsiTrigger ? EPOLLPRI : EPOLLIN;
  EXPECT_EQ(monitor.pressure_event_mask(), expected_mask);

  // The descriptor must be accepted by epoll, as the warden will use it.
  int epoll = epoll_create1(EPOLL_CLOEXEC);
  ASSERT_GE(epoll, 0);
  struct epoll_event event = {};
  event.events = monitor.pressure_event_mask();
  EXPECT_EQ(epoll_ctl(epoll, EPOLL_CTL_ADD, monitor.pressure_event_fd(), &event), 0)
      << strerror(errno);
  close(epoll);
  monitor.AcknowledgePressureEvent();
}

// The monitor's v2 path against this machine's cgroup2 mount: a prepared
// proc/self (the process at the v2 root) with the real file system under
// it, so the pressure source must be a PSI trigger on a real cgroup2 file.
TEST(CgroupLiveV2, PsiTriggerOnCgroup2Mount) {
  std::string mount_point;
  std::istringstream lines(ReadWhole("/proc/self/mountinfo"));
  for (std::string line; std::getline(lines, line);) {
    if (line.find(" - cgroup2 ") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string id, parent, device, root;
    fields >> id >> parent >> device >> root >> mount_point;
    break;
  }
  if (mount_point.empty() || access((mount_point + "/memory.pressure").c_str(), F_OK) != 0) {
    GTEST_SKIP() << "no cgroup2 mount with memory.pressure";
  }
  testing::CgroupTree proc;
  proc.Write("cgroup", "0::/\n");
  proc.Write("mountinfo", "41 31 0:38 / " + mount_point + " rw - cgroup2 cgroup2 rw\n");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.Discover("/", proc.root().c_str()));
  EXPECT_EQ(monitor.layout().memory_version, CgroupVersion::kV2);
  EXPECT_EQ(monitor.psi_path(), mount_point + "/memory.pressure");

  if (monitor.pressure_source() == PressureSourceKind::kNone) {
    EXPECT_EQ(log.Count({"pressure source", "memory.pressure"}), 1);
    return;
  }
  EXPECT_EQ(monitor.pressure_source(), PressureSourceKind::kPsiTrigger);
  EXPECT_EQ(monitor.pressure_source_path(), mount_point + "/memory.pressure");
  EXPECT_EQ(monitor.pressure_event_mask(), static_cast<uint32_t>(EPOLLPRI));
  struct pollfd poll_fd = {monitor.pressure_event_fd(), POLLPRI, 0};
  EXPECT_GE(poll(&poll_fd, 1, 0), 0);
  EXPECT_EQ(poll_fd.revents & (POLLERR | POLLNVAL), 0);
  EXPECT_GE(monitor.Read().psi_some_avg10, 0);
}

TEST(PressureSourceLive, PsiTriggerOnSystemFile) {
  if (access("/proc/pressure/memory", F_OK) != 0) GTEST_SKIP() << "no PSI on this kernel";
  PressureSource source;
  std::string error;
  if (!source.OpenPsiTrigger("/proc/pressure/memory", 150000, 1000000, &error)) {
    // Writing a trigger needs privilege before Linux 6.4: the reason names
    // the file and errno's text.
    EXPECT_NE(error.find("/proc/pressure/memory"), std::string::npos) << error;
    EXPECT_EQ(source.fd(), -1);
    return;
  }
  EXPECT_EQ(source.kind(), PressureSourceKind::kPsiTrigger);
  EXPECT_GE(source.fd(), 0);
  EXPECT_EQ(source.mask(), static_cast<uint32_t>(EPOLLPRI));
  struct pollfd poll_fd = {source.fd(), POLLPRI, 0};
  EXPECT_GE(poll(&poll_fd, 1, 0), 0);
  EXPECT_EQ(poll_fd.revents & (POLLERR | POLLNVAL), 0);
}

TEST(PressureSourceLive, InvalidTriggerIsRejected) {
  if (access("/proc/pressure/memory", F_OK) != 0) GTEST_SKIP() << "no PSI on this kernel";
  PressureSource source;
  std::string error;
  // The kernel rejects a window over 10 s.
  EXPECT_FALSE(source.OpenPsiTrigger("/proc/pressure/memory", 150000, 60000000, &error));
  EXPECT_EQ(source.kind(), PressureSourceKind::kNone);
  EXPECT_NE(error.find("failed"), std::string::npos) << error;
}

}  // namespace
}  // namespace memward::accounting
