// The cgroup monitor in a real child memory cgroup: the test creates a
// cgroup under its own (which needs root), gives it a limit, moves a forked
// process into it, and removes it afterwards. The moved process must see the
// new limit through re-discovery, and page-cache reclaim inside the limit
// must raise a v1 pressure-level event.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "accounting/cgroup_monitor.h"
#include "accounting/pressure_source.h"
#include "tests/unit/cgroup_tree.h"

namespace memward::accounting {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

bool WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return written;
}

// A child memory cgroup of the test's own, removed when the guard dies.
class ChildCgroup {
 public:
  ChildCgroup(const CgroupLayout& parent, const std::string& name)
      : layout_(parent), dir_(parent.memory_dir + "/" + name) {
    created_ = mkdir(dir_.c_str(), 0755) == 0;
  }
  ~ChildCgroup() {
    if (!created_) return;
    // The kernel may still be releasing an exited task; retry briefly.
    for (int attempt = 0; attempt < 200 && rmdir(dir_.c_str()) != 0 && errno == EBUSY;
         attempt++) {
      usleep(10 * 1000);
    }
  }
  ChildCgroup(const ChildCgroup&) = delete;
  ChildCgroup& operator=(const ChildCgroup&) = delete;

  bool created() const { return created_; }
  const std::string& dir() const { return dir_; }

  bool SetLimit(uint64_t bytes) {
    const char* file = layout_.memory_version == CgroupVersion::kV1 ? "/memory.limit_in_bytes"
                                                                   : "/memory.max";
    return WriteFile(dir_ + file, std::to_string(bytes));
  }

  bool MoveProcess(pid_t pid) { return WriteFile(dir_ + "/cgroup.procs", std::to_string(pid)); }

 private:
  CgroupLayout layout_;
  std::string dir_;
  bool created_ = false;
};

// Runs `body` in a forked child and returns what it wrote to the pipe.
template <typename Body>
std::string RunInChild(Body body, int* status) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return "pipe failed";
  pid_t pid = fork();
  if (pid == 0) {
    close(pipe_fds[0]);
    std::string report = body();
    ssize_t ignored = write(pipe_fds[1], report.data(), report.size());
    (void)ignored;
    _exit(0);
  }
  close(pipe_fds[1]);
  std::string report;
  char buffer[512];
  ssize_t got;
  while ((got = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) report.append(buffer, got);
  close(pipe_fds[0]);
  waitpid(pid, status, 0);
  return report;
}

class CgroupChild : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "creating a cgroup needs root";
    if (!monitor_.Discover("/", "/proc/self")) GTEST_SKIP() << "no memory cgroup";
    layout_ = monitor_.layout();
    name_ = "memward_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  CgroupMonitor monitor_;
  CgroupLayout layout_;
  std::string name_;
};

TEST_F(CgroupChild, MovedProcessSeesNewLimit) {
  ChildCgroup child(layout_, name_);
  if (!child.created()) GTEST_SKIP() << "cannot create " << child.dir() << ": " << strerror(errno);
  if (!child.SetLimit(64 * kMiB)) GTEST_SKIP() << "cannot set a limit on " << child.dir();

  int status = 0;
  std::string report = RunInChild(
      [&] {
        CgroupMonitor monitor;
        monitor.Discover("/", "/proc/self");
        uint64_t before = monitor.generation();
        if (!child.MoveProcess(getpid())) return std::string("move failed");
        CgroupReading reading = monitor.Read();
        return monitor.layout().memory_dir + "\n" + std::to_string(reading.limit_bytes) + "\n" +
               (monitor.generation() != before ? "rediscovered" : "same") + "\n" +
               monitor.pressure_source_path() + "\n";
      },
      &status);
  ASSERT_TRUE(WIFEXITED(status));

  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = report.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(report.substr(start, end - start));
  }
  ASSERT_EQ(lines.size(), 4u) << report;
  EXPECT_EQ(lines[0], child.dir());
  EXPECT_EQ(lines[1], std::to_string(64 * kMiB));
  EXPECT_EQ(lines[2], "rediscovered");
  if (!lines[3].empty() && layout_.memory_version == CgroupVersion::kV1) {
    EXPECT_EQ(lines[3], child.dir() + "/memory.pressure_level");
  }
}

TEST_F(CgroupChild, ReclaimRaisesPressureLevelEvent) {
  if (layout_.memory_version != CgroupVersion::kV1) GTEST_SKIP() << "v1 only";
  ChildCgroup child(layout_, name_);
  if (!child.created()) GTEST_SKIP() << "cannot create " << child.dir();
  ASSERT_TRUE(child.SetLimit(32 * kMiB));

  // A 96 MiB file, written and dropped from the page cache here, so that
  // reading it in the child charges clean pages to the 32 MiB cgroup and
  // the kernel must reclaim them ("low" is any reclaim).
  testing::CgroupTree scratch;
  std::string file = scratch.Path("cache_file");
  {
    std::vector<char> block(kMiB, 'x');
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    for (int i = 0; i < 96; i++) ASSERT_EQ(write(fd, block.data(), block.size()), (ssize_t)kMiB);
    ASSERT_EQ(fsync(fd), 0);
    ASSERT_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    close(fd);
  }

  PressureSource source;
  std::string error;
  ASSERT_TRUE(source.OpenV1PressureLevel(child.dir(), "low", &error)) << error;

  int status = 0;
  std::string report = RunInChild(
      [&] {
        if (!child.MoveProcess(getpid())) return std::string("move failed");
        int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return std::string("open failed");
        std::vector<char> block(kMiB);
        while (read(fd, block.data(), block.size()) > 0) {
        }
        close(fd);
        return std::string("read");
      },
      &status);
  ASSERT_EQ(report, "read");

  // The event is already pending when the child is done; the timeout is only
  // a backstop so that a missing event fails instead of hanging.
  struct pollfd poll_fd = {source.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&poll_fd, 1, 10 * 1000), 1);
  EXPECT_TRUE(poll_fd.revents & POLLIN);
  source.Acknowledge();
  EXPECT_EQ(poll(&poll_fd, 1, 0), 0) << "Acknowledge must consume the event";
}

}  // namespace
}  // namespace memward::accounting
