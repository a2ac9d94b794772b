// The cgroup monitor with broken input: a directory where a file is
// expected, missing files and garbage content. Each gives one clear message
// (the file, what was wrong, the fallback), a fallback value and no crash.
// chmod 000 cannot make a file unreadable here, because the tests may run as
// root, which ignores file modes.
#include <gtest/gtest.h>

#include <string>

#include "accounting/cgroup_files.h"
#include "accounting/cgroup_monitor.h"
#include "tests/unit/cgroup_tree.h"

namespace memward::accounting {
namespace {

using testing::CgroupTree;
using testing::LogCapture;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kTreeMemory = 8192 * kMiB;
constexpr const char* kDir = "sys/fs/cgroup/app";

// A v2 tree with the process in /app and a 512 MiB limit there. The root
// has no memory.max, as in the kernel.
void WriteTree(const CgroupTree& tree) {
  tree.WriteMemTotal(kTreeMemory);
  tree.Write("proc/self/cgroup", "0::/app\n");
  tree.Write("proc/self/mountinfo",
             "25 30 0:23 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n");
  std::string dir = kDir;
  tree.Write(dir + "/memory.max", std::to_string(512 * kMiB) + "\n");
  tree.Write(dir + "/memory.high", "max\n");
  tree.Write(dir + "/memory.current", std::to_string(64 * kMiB) + "\n");
  tree.Write(dir + "/memory.stat", "inactive_file " + std::to_string(4 * kMiB) + "\n");
  tree.Write(dir + "/memory.events", "low 0\nhigh 0\nmax 9\noom 0\noom_kill 0\n");
}

std::string File(const CgroupTree& tree, const char* name) {
  return tree.Path(kDir) + "/" + name;
}

TEST(CgroupErrors, DirectoryInPlaceOfLimitFile) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Remove(std::string(kDir) + "/memory.max");
  tree.MakeDirectory(std::string(kDir) + "/memory.max");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading first = monitor.Read();
  CgroupReading second = monitor.Read();
  EXPECT_TRUE(first.ok);
  EXPECT_EQ(first.limit_bytes, kTreeMemory);
  EXPECT_EQ(second.limit_bytes, kTreeMemory);
  EXPECT_EQ(first.usage_bytes, 64 * kMiB);
  EXPECT_EQ(log.Count({File(tree, "memory.max"), "Is a directory", "physical memory"}), 1);
}

TEST(CgroupErrors, GarbageLimitFallsBack) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Write(std::string(kDir) + "/memory.max", "lots\n");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  EXPECT_EQ(monitor.Read().limit_bytes, kTreeMemory);
  EXPECT_EQ(monitor.Read().limit_bytes, kTreeMemory);
  EXPECT_EQ(log.Count({File(tree, "memory.max"), "invalid content \"lots\"",
                       "expected a byte count or \"max\""}),
            1);
}

TEST(CgroupErrors, OverflowingNumberIsInvalid) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Write(std::string(kDir) + "/memory.current", "99999999999999999999999\n");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_FALSE(reading.ok);
  EXPECT_EQ(log.Count({File(tree, "memory.current"), "invalid content"}), 1);
}

TEST(CgroupErrors, MissingUsageMarksReadingNotOk) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Remove(std::string(kDir) + "/memory.current");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_FALSE(reading.ok);
  EXPECT_EQ(reading.limit_bytes, 512 * kMiB);
  EXPECT_EQ(reading.usage_bytes, 0u);
  EXPECT_EQ(log.Count({File(tree, "memory.current"), "missing", "not ok"}), 1);
}

TEST(CgroupErrors, GarbageStatKeepsUsageAsWorkingSet) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Write(std::string(kDir) + "/memory.stat", "inactive_file many\n\x01\x02\n");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_TRUE(reading.ok);
  EXPECT_EQ(reading.working_set_bytes, 64 * kMiB);
  EXPECT_EQ(log.Count({File(tree, "memory.stat"), "inactive_file", "equals usage"}), 1);
}

TEST(CgroupErrors, GarbageEventsLeaveCountersZero) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Write(std::string(kDir) + "/memory.events", "\xff\xfe garbage\nmax -3\n");
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_TRUE(reading.ok);
  EXPECT_EQ(reading.events.max, 0u);
}

TEST(CgroupErrors, MissingProcSelfCgroup) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Remove("proc/self/cgroup");
  LogCapture log;
  CgroupMonitor monitor;
  EXPECT_FALSE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_FALSE(reading.ok);
  EXPECT_EQ(reading.limit_bytes, kTreeMemory);
  EXPECT_EQ(monitor.layout().memory_version, CgroupVersion::kNone);
  EXPECT_EQ(log.Count({tree.Path("proc/self/cgroup"), "missing", "physical memory"}), 1);
}

TEST(CgroupErrors, DirectoryInPlaceOfMountinfo) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Remove("proc/self/mountinfo");
  tree.MakeDirectory("proc/self/mountinfo");
  LogCapture log;
  CgroupMonitor monitor;
  EXPECT_FALSE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.Read().limit_bytes, kTreeMemory);
  EXPECT_EQ(log.Count({tree.Path("proc/self/mountinfo"), "Is a directory"}), 1);
}

TEST(CgroupErrors, GarbageMountinfoFindsNoHierarchy) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Write("proc/self/mountinfo", "this is not\na mount table\n");
  LogCapture log;
  CgroupMonitor monitor;
  EXPECT_FALSE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.Read().limit_bytes, kTreeMemory);
  EXPECT_EQ(log.Count({tree.Path("proc/self/mountinfo"), "2 malformed lines"}), 1);
  EXPECT_EQ(log.Count({"no cgroup2 mount", "physical memory"}), 1);
}

TEST(CgroupErrors, GarbagePsiReportsUnavailable) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Write(std::string(kDir) + "/memory.pressure", "some avg10=x\n");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_EQ(reading.psi_some_avg10, -1);
  EXPECT_EQ(reading.psi_full_avg10, -1);
  EXPECT_EQ(log.Count({File(tree, "memory.pressure"), "avg10"}), 1);
}

TEST(CgroupErrors, GarbageMeminfoUsesSysconf) {
  CgroupTree tree;
  WriteTree(tree);
  tree.Write(std::string(kDir) + "/memory.max", "max\n");
  tree.Write("proc/meminfo", "MemTotal: lots\n");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_GT(reading.physical_memory_bytes, 0u);
  EXPECT_NE(reading.physical_memory_bytes, kTreeMemory);
  EXPECT_EQ(reading.limit_bytes, reading.physical_memory_bytes);
  EXPECT_EQ(log.Count({tree.Path("proc/meminfo"), "MemTotal", "sysconf"}), 1);
}

TEST(CgroupErrors, MissingRootNoCrash) {
  LogCapture log;
  CgroupMonitor monitor;
  EXPECT_FALSE(monitor.DiscoverUnderRoot("/nonexistent/memward/root"));
  CgroupReading reading = monitor.Read();
  EXPECT_FALSE(reading.ok);
  EXPECT_GT(reading.limit_bytes, 0u);
  EXPECT_EQ(monitor.pressure_event_fd(), -1);
}

TEST(CgroupFiles, ParseByteCount) {
  uint64_t value = 0;
  EXPECT_TRUE(ParseByteCount("123\n", false, &value));
  EXPECT_EQ(value, 123u);
  EXPECT_TRUE(ParseByteCount("18446744073709551615", false, &value));
  EXPECT_EQ(value, UINT64_MAX);
  EXPECT_TRUE(ParseByteCount("max\n", true, &value));
  EXPECT_EQ(value, UINT64_MAX);
  EXPECT_FALSE(ParseByteCount("max", false, &value));
  EXPECT_FALSE(ParseByteCount("18446744073709551616", false, &value));
  EXPECT_FALSE(ParseByteCount("-1", false, &value));
  EXPECT_FALSE(ParseByteCount("", false, &value));
  EXPECT_FALSE(ParseByteCount("12 kB", false, &value));
}

TEST(CgroupFiles, FindKeyedValueMatchesWholeKey) {
  uint64_t value = 0;
  const char* text = "total_inactive_file 5\ninactive_file 7\noom_kill_disable 0\noom_kill 3\n";
  EXPECT_TRUE(FindKeyedValue(text, "inactive_file", &value));
  EXPECT_EQ(value, 7u);
  EXPECT_TRUE(FindKeyedValue(text, "oom_kill", &value));
  EXPECT_EQ(value, 3u);
  EXPECT_FALSE(FindKeyedValue(text, "oom", &value));
}

TEST(CgroupFiles, FindMeminfoBytes) {
  uint64_t bytes = 0;
  EXPECT_TRUE(FindMeminfoBytes("MemTotal:       16384 kB\nMemFree: 1 kB\n", "MemTotal", &bytes));
  EXPECT_EQ(bytes, 16384u * 1024);
  EXPECT_FALSE(FindMeminfoBytes("MemTotal: 16384\n", "MemTotal", &bytes));
  EXPECT_FALSE(FindMeminfoBytes("MemTotalX: 1 kB\n", "MemTotal", &bytes));
}

}  // namespace
}  // namespace memward::accounting
