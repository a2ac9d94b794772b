// The cgroup monitor against prepared trees: every layout, nested and
// missing limits, run-time changes, and broken files.
#include "accounting/cgroup_monitor.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/cgroup_tree.h"

namespace memward::accounting {
namespace {

using testing::CgroupTree;
using testing::LogCapture;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kGiB = 1024 * kMiB;
// The machine size written to each tree's proc/meminfo.
constexpr uint64_t kTreeMemory = 16 * kGiB;

constexpr const char* kV2Mountinfo =
    "25 30 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
constexpr const char* kV1Mountinfo =
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
constexpr const char* kHybridMountinfo =
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

constexpr const char* kV2Dir = "sys/fs/cgroup/kubepods/pod1/c1";
constexpr const char* kV1Dir = "sys/fs/cgroup/memory/svc/worker";

// Writes a v2 tree: the process in /kubepods/pod1/c1 with `limit` (a
// memory.max text) and usage `usage` bytes, of which `inactive_file` bytes
// are inactive page cache.
void WriteV2Tree(const CgroupTree& tree, const std::string& limit, uint64_t usage,
                 uint64_t inactive_file) {
  tree.WriteMemTotal(kTreeMemory);
  tree.Write("proc/self/cgroup", "0::/kubepods/pod1/c1\n");
  tree.Write("proc/self/mountinfo", kV2Mountinfo);
  std::string dir = kV2Dir;
  tree.Write(dir + "/memory.max", limit + "\n");
  tree.Write(dir + "/memory.high", "max\n");
  tree.Write(dir + "/memory.current", std::to_string(usage) + "\n");
  tree.Write(dir + "/memory.stat", "anon 1000\nfile 2000\ninactive_file " +
                                       std::to_string(inactive_file) + "\nactive_file 5\n");
  tree.Write(dir + "/memory.events", "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\n");
  tree.Write(dir + "/memory.pressure",
             "some avg10=1.50 avg60=0.20 avg300=0.00 total=100\n"
             "full avg10=0.75 avg60=0.00 avg300=0.00 total=50\n");
  tree.Write("sys/fs/cgroup/kubepods/pod1/memory.max", "max\n");
  tree.Write("sys/fs/cgroup/kubepods/memory.max", "max\n");
}

// Writes a v1 tree: the process in /svc/worker under the memory mount.
void WriteV1Tree(const CgroupTree& tree, uint64_t limit, uint64_t usage) {
  tree.WriteMemTotal(kTreeMemory);
  tree.Write("proc/self/cgroup", "9:name=systemd:/\n4:memory:/svc/worker\n1:cpu:/\n");
  tree.Write("proc/self/mountinfo", kV1Mountinfo);
  std::string dir = kV1Dir;
  tree.Write(dir + "/memory.limit_in_bytes", std::to_string(limit) + "\n");
  tree.Write(dir + "/memory.soft_limit_in_bytes", "9223372036854771712\n");
  tree.Write(dir + "/memory.usage_in_bytes", std::to_string(usage) + "\n");
  tree.Write(dir + "/memory.stat",
             "cache 100\nrss 200\ninactive_file 7\nhierarchical_memory_limit "
             "9223372036854771712\ntotal_inactive_file " +
                 std::to_string(10 * kMiB) + "\n");
  tree.Write(dir + "/memory.failcnt", "12\n");
  tree.Write(dir + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  tree.Write("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", "9223372036854771712\n");
  tree.Write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
}

TEST(CgroupMonitorV2, ReadsLimitUsageAndEvents) {
  CgroupTree tree;
  WriteV2Tree(tree, std::to_string(512 * kMiB), 300 * kMiB, 100 * kMiB);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.layout().memory_version, CgroupVersion::kV2);
  EXPECT_EQ(monitor.layout().memory_dir, tree.Path(kV2Dir));

  CgroupReading reading = monitor.Read();
  EXPECT_TRUE(reading.ok);
  EXPECT_EQ(reading.limit_bytes, 512 * kMiB);
  EXPECT_TRUE(reading.limit_from_cgroup);
  EXPECT_EQ(reading.physical_memory_bytes, kTreeMemory);
  EXPECT_EQ(reading.high_bytes, UINT64_MAX);
  EXPECT_EQ(reading.usage_bytes, 300 * kMiB);
  EXPECT_EQ(reading.working_set_bytes, 200 * kMiB);
  EXPECT_EQ(reading.events.low, 1u);
  EXPECT_EQ(reading.events.high, 2u);
  EXPECT_EQ(reading.events.max, 3u);
  EXPECT_EQ(reading.events.oom, 4u);
  EXPECT_EQ(reading.events.oom_kill, 5u);
  EXPECT_DOUBLE_EQ(reading.psi_some_avg10, 1.5);
  EXPECT_DOUBLE_EQ(reading.psi_full_avg10, 0.75);
  EXPECT_EQ(monitor.psi_path(), tree.Path(kV2Dir) + "/memory.pressure");
}

TEST(CgroupMonitorV2, AncestorLimitIsSmaller) {
  CgroupTree tree;
  WriteV2Tree(tree, std::to_string(2 * kGiB), 100 * kMiB, 0);
  tree.Write("sys/fs/cgroup/kubepods/pod1/memory.max", std::to_string(768 * kMiB));
  tree.Write("sys/fs/cgroup/kubepods/memory.max", std::to_string(kGiB));
  tree.Write("sys/fs/cgroup/kubepods/memory.high", std::to_string(700 * kMiB));
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_EQ(reading.limit_bytes, 768 * kMiB);
  EXPECT_EQ(reading.high_bytes, 700 * kMiB);
}

TEST(CgroupMonitorV2, NoLimitUsesPhysicalMemory) {
  CgroupTree tree;
  WriteV2Tree(tree, "max", 100 * kMiB, 0);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_TRUE(reading.ok);
  EXPECT_EQ(reading.limit_bytes, kTreeMemory);
  EXPECT_FALSE(reading.limit_from_cgroup);
}

TEST(CgroupMonitorV2, LimitAbovePhysicalMemoryIsCapped) {
  CgroupTree tree;
  WriteV2Tree(tree, std::to_string(64 * kGiB), 100 * kMiB, 0);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_EQ(reading.limit_bytes, kTreeMemory);
  EXPECT_FALSE(reading.limit_from_cgroup);
}

TEST(CgroupMonitorV2, NamespaceRootReadsMountPoint) {
  // Inside a cgroup namespace the process's own cgroup shows as "/" and the
  // cgroup2 mount shows the namespace's root, so the files sit at the mount.
  CgroupTree tree;
  tree.WriteMemTotal(kTreeMemory);
  tree.Write("proc/self/cgroup", "0::/\n");
  tree.Write("proc/self/mountinfo", kV2Mountinfo);
  tree.Write("sys/fs/cgroup/memory.max", std::to_string(256 * kMiB));
  tree.Write("sys/fs/cgroup/memory.current", std::to_string(10 * kMiB));
  tree.Write("sys/fs/cgroup/memory.stat", "inactive_file 0\n");
  tree.Write("sys/fs/cgroup/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.layout().memory_dir, tree.Path("sys/fs/cgroup"));

  CgroupReading reading = monitor.Read();
  EXPECT_TRUE(reading.ok);
  EXPECT_EQ(reading.limit_bytes, 256 * kMiB);
  EXPECT_EQ(reading.usage_bytes, 10 * kMiB);
  EXPECT_EQ(log.Count({"memory.max"}), 0);
}

TEST(CgroupMonitorV1, ReadsLimitsAndCounters) {
  CgroupTree tree;
  WriteV1Tree(tree, 400 * kMiB, 150 * kMiB);
  tree.Write(std::string(kV1Dir) + "/memory.soft_limit_in_bytes", std::to_string(300 * kMiB));
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.layout().memory_version, CgroupVersion::kV1);
  EXPECT_FALSE(monitor.layout().hybrid);

  CgroupReading reading = monitor.Read();
  EXPECT_TRUE(reading.ok);
  EXPECT_EQ(reading.limit_bytes, 400 * kMiB);
  EXPECT_EQ(reading.high_bytes, 300 * kMiB);
  EXPECT_EQ(reading.usage_bytes, 150 * kMiB);
  EXPECT_EQ(reading.working_set_bytes, 140 * kMiB);
  EXPECT_EQ(reading.events.max, 12u);
  EXPECT_EQ(reading.events.oom_kill, 2u);
  EXPECT_EQ(reading.events.low, 0u);
  EXPECT_EQ(reading.psi_some_avg10, -1);
}

TEST(CgroupMonitorV1, UnlimitedSentinelMeansNoLimit) {
  CgroupTree tree;
  WriteV1Tree(tree, 9223372036854771712ull, 150 * kMiB);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));

  CgroupReading reading = monitor.Read();
  EXPECT_EQ(reading.limit_bytes, kTreeMemory);
  EXPECT_FALSE(reading.limit_from_cgroup);
  EXPECT_EQ(reading.high_bytes, UINT64_MAX);
}

TEST(CgroupMonitorV1, AncestorLimitIsSmaller) {
  CgroupTree tree;
  WriteV1Tree(tree, 2 * kGiB, 150 * kMiB);
  tree.Write("sys/fs/cgroup/memory/svc/memory.limit_in_bytes", std::to_string(600 * kMiB));
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.Read().limit_bytes, 600 * kMiB);
}

TEST(CgroupMonitorV1, HierarchicalLimitCoversHiddenAncestors) {
  // A bind mount of the process's own subtree hides the ancestors' files,
  // but memory.stat's hierarchical_memory_limit includes their limits.
  CgroupTree tree;
  WriteV1Tree(tree, 2 * kGiB, 150 * kMiB);
  tree.Write("proc/self/mountinfo",
             "35 31 0:32 /svc/worker /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
  tree.Write("sys/fs/cgroup/memory/memory.limit_in_bytes", std::to_string(2 * kGiB));
  tree.Write("sys/fs/cgroup/memory/memory.usage_in_bytes", std::to_string(150 * kMiB));
  tree.Write("sys/fs/cgroup/memory/memory.stat",
             "hierarchical_memory_limit " + std::to_string(900 * kMiB) +
                 "\ntotal_inactive_file 0\n");
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.layout().memory_dir, tree.Path("sys/fs/cgroup/memory"));
  EXPECT_EQ(monitor.Read().limit_bytes, 900 * kMiB);
}

TEST(CgroupMonitorHybrid, ReadsPsiFromCgroup2Tree) {
  CgroupTree tree;
  WriteV1Tree(tree, 400 * kMiB, 150 * kMiB);
  tree.Write("proc/self/cgroup", "4:memory:/svc/worker\n0::/svc\n");
  tree.Write("proc/self/mountinfo", kHybridMountinfo);
  tree.Write("sys/fs/cgroup/unified/svc/memory.pressure",
             "some avg10=3.25 avg60=0.00 avg300=0.00 total=7\n"
             "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  tree.Write(std::string(kV1Dir) + "/memory.pressure_level", "");
  tree.Write(std::string(kV1Dir) + "/cgroup.event_control", "");
  LogCapture log;
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  CgroupLayout layout = monitor.layout();
  EXPECT_EQ(layout.memory_version, CgroupVersion::kV1);
  EXPECT_TRUE(layout.hybrid);
  EXPECT_EQ(layout.pressure_dir, tree.Path("sys/fs/cgroup/unified/svc"));

  CgroupReading reading = monitor.Read();
  EXPECT_EQ(reading.limit_bytes, 400 * kMiB);
  EXPECT_DOUBLE_EQ(reading.psi_some_avg10, 3.25);
  EXPECT_DOUBLE_EQ(reading.psi_full_avg10, 0.0);

  // A prepared tree is an ordinary file system, so no kernel notification
  // can be set up, and the fallback is reported once.
  EXPECT_EQ(monitor.pressure_source(), PressureSourceKind::kNone);
  EXPECT_EQ(monitor.pressure_event_fd(), -1);
  EXPECT_EQ(monitor.pressure_event_mask(), 0u);
  EXPECT_EQ(monitor.pressure_source_path(), "");
  EXPECT_EQ(log.Count({"pressure source", "not on a cgroup v1 file system",
                       "not on cgroup2 or procfs", "on its timer"}),
            1);
}

TEST(CgroupMonitorHybrid, SystemPsiWhenCgroupHasNone) {
  CgroupTree tree;
  WriteV1Tree(tree, 400 * kMiB, 150 * kMiB);
  tree.Write("proc/self/cgroup", "4:memory:/svc/worker\n0::/\n");
  tree.Write("proc/self/mountinfo", kHybridMountinfo);
  tree.Write("proc/pressure/memory", "some avg10=0.50 avg60=0.00 avg300=0.00 total=7\n");
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.psi_path(), tree.Path("proc/pressure/memory"));

  CgroupReading reading = monitor.Read();
  EXPECT_DOUBLE_EQ(reading.psi_some_avg10, 0.5);
  EXPECT_EQ(reading.psi_full_avg10, -1);
}

TEST(CgroupMonitor, WorkingSetFlooredAtZero) {
  CgroupTree tree;
  WriteV2Tree(tree, std::to_string(512 * kMiB), 100 * kMiB, 200 * kMiB);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.Read().working_set_bytes, 0u);
}

TEST(CgroupMonitor, RuntimeLimitChangeIsSeen) {
  CgroupTree tree;
  WriteV2Tree(tree, std::to_string(512 * kMiB), 100 * kMiB, 0);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.Read().limit_bytes, 512 * kMiB);

  tree.Write(std::string(kV2Dir) + "/memory.max", std::to_string(256 * kMiB));
  tree.Write(std::string(kV2Dir) + "/memory.current", std::to_string(200 * kMiB));
  CgroupReading reading = monitor.Read();
  EXPECT_EQ(reading.limit_bytes, 256 * kMiB);
  EXPECT_EQ(reading.usage_bytes, 200 * kMiB);

  tree.Write(std::string(kV2Dir) + "/memory.max", "max");
  EXPECT_EQ(monitor.Read().limit_bytes, kTreeMemory);
}

TEST(CgroupMonitor, ReadUsageFollowsUsageFile) {
  CgroupTree tree;
  WriteV2Tree(tree, std::to_string(512 * kMiB), 100 * kMiB, 0);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  uint64_t usage = 0;
  EXPECT_FALSE(monitor.ReadUsage(&usage)) << "the usage file opens at the first Read()";

  ASSERT_TRUE(monitor.Read().ok);
  ASSERT_TRUE(monitor.ReadUsage(&usage));
  EXPECT_EQ(usage, 100 * kMiB);
  tree.Write(std::string(kV2Dir) + "/memory.current", std::to_string(150 * kMiB) + "\n");
  ASSERT_TRUE(monitor.ReadUsage(&usage));
  EXPECT_EQ(usage, 150 * kMiB);

  tree.Write(std::string(kV2Dir) + "/memory.current", "garbage\n");
  EXPECT_FALSE(monitor.ReadUsage(&usage));
}

TEST(CgroupMonitorV1, ReadUsageReadsUsageInBytes) {
  CgroupTree tree;
  WriteV1Tree(tree, 512 * kMiB, 64 * kMiB);
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  ASSERT_TRUE(monitor.Read().ok);
  uint64_t usage = 0;
  ASSERT_TRUE(monitor.ReadUsage(&usage));
  EXPECT_EQ(usage, 64 * kMiB);
}

TEST(CgroupMonitor, PathChangeRediscovers) {
  CgroupTree tree;
  WriteV2Tree(tree, std::to_string(512 * kMiB), 100 * kMiB, 0);
  tree.Write("sys/fs/cgroup/batch/memory.max", std::to_string(128 * kMiB));
  tree.Write("sys/fs/cgroup/batch/memory.current", std::to_string(5 * kMiB));
  CgroupMonitor monitor;
  ASSERT_TRUE(monitor.DiscoverUnderRoot(tree.root().c_str()));
  EXPECT_EQ(monitor.Read().limit_bytes, 512 * kMiB);
  uint64_t generation = monitor.generation();

  // The process was moved to another cgroup.
  tree.Write("proc/self/cgroup", "0::/batch\n");
  CgroupReading reading = monitor.Read();
  EXPECT_EQ(monitor.layout().memory_cgroup_path, "/batch");
  EXPECT_EQ(reading.limit_bytes, 128 * kMiB);
  EXPECT_EQ(reading.usage_bytes, 5 * kMiB);
  EXPECT_NE(monitor.generation(), generation);
  uint64_t usage = 0;
  ASSERT_TRUE(monitor.ReadUsage(&usage));
  EXPECT_EQ(usage, 5 * kMiB) << "ReadUsage still reads the cgroup the process left";
}

}  // namespace
}  // namespace memward::accounting
