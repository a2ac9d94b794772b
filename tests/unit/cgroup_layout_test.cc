// Parsing /proc/self/cgroup and mountinfo, and resolving the memory cgroup's
// directories for v1, v2, hybrid, bind-mounted and namespaced layouts.
#include "accounting/cgroup_layout.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace memward::accounting {
namespace {

constexpr const char* kHybridCgroup =
    "9:name=systemd:/\n"
    "4:memory:/process_api/abc\n"
    "1:cpu:/\n"
    "0::/\n";

constexpr const char* kHybridMountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

constexpr const char* kV2Mountinfo =
    "25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
    "30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";

std::vector<ProcCgroupEntry> Entries(std::string_view text) {
  return ParseProcCgroup(text, nullptr);
}

std::vector<CgroupMount> Mounts(std::string_view text) {
  return ParseCgroupMounts(text, nullptr);
}

TEST(ProcCgroup, ParsesV1AndV2Lines) {
  int malformed = -1;
  std::vector<ProcCgroupEntry> entries = ParseProcCgroup(kHybridCgroup, &malformed);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(malformed, 0);
  EXPECT_EQ(entries[1].hierarchy_id, 4);
  EXPECT_EQ(entries[1].controllers, "memory");
  EXPECT_EQ(entries[1].path, "/process_api/abc");
  EXPECT_EQ(entries[3].hierarchy_id, 0);
  EXPECT_EQ(entries[3].controllers, "");
  EXPECT_EQ(entries[3].path, "/");
}

TEST(ProcCgroup, KeepsColonsInPath) {
  std::vector<ProcCgroupEntry> entries = Entries("0::/pod:a/b:c\n");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].path, "/pod:a/b:c");
}

TEST(ProcCgroup, CountsMalformedLines) {
  int malformed = 0;
  std::vector<ProcCgroupEntry> entries =
      ParseProcCgroup("garbage\nx:memory:/a\n4:memory\n4:memory:relative\n0::/ok", &malformed);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].path, "/ok");
  EXPECT_EQ(malformed, 4);
}

TEST(ProcCgroup, FindMemoryEntry) {
  std::vector<ProcCgroupEntry> entries = Entries("5:cpu,memory:/v1path\n0::/v2path\n");
  const ProcCgroupEntry* v1 = FindMemoryEntry(entries, CgroupVersion::kV1);
  const ProcCgroupEntry* v2 = FindMemoryEntry(entries, CgroupVersion::kV2);
  ASSERT_NE(v1, nullptr);
  ASSERT_NE(v2, nullptr);
  EXPECT_EQ(v1->path, "/v1path");
  EXPECT_EQ(v2->path, "/v2path");
  EXPECT_EQ(FindMemoryEntry(Entries("5:cpu,memoryx:/a\n"), CgroupVersion::kV1), nullptr);
  EXPECT_EQ(FindMemoryEntry(entries, CgroupVersion::kNone), nullptr);
}

TEST(CgroupMounts, ParsesOnlyCgroupFileSystems) {
  int malformed = -1;
  std::vector<CgroupMount> mounts = ParseCgroupMounts(kHybridMountinfo, &malformed);
  ASSERT_EQ(mounts.size(), 4u);
  EXPECT_EQ(malformed, 0);
  EXPECT_FALSE(mounts[1].v2);
  EXPECT_EQ(mounts[1].mount_point, "/sys/fs/cgroup/memory");
  EXPECT_EQ(mounts[1].super_options, "rw,memory");
  EXPECT_TRUE(mounts[3].v2);
  EXPECT_EQ(mounts[3].root, "/");
}

TEST(CgroupMounts, SkipsOptionalFields) {
  std::vector<CgroupMount> mounts = Mounts(kV2Mountinfo);
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_TRUE(mounts[0].v2);
  EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup");
  EXPECT_EQ(mounts[0].super_options, "rw,nsdelegate,memory_recursiveprot");
}

TEST(CgroupMounts, DecodesOctalEscapes) {
  std::vector<CgroupMount> mounts =
      Mounts("1 2 0:1 /a\\040b /mnt/my\\134cg rw - cgroup2 cgroup2 rw\n");
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].root, "/a b");
  EXPECT_EQ(mounts[0].mount_point, "/mnt/my\\cg");
}

TEST(CgroupMounts, CountsMalformedLines) {
  int malformed = 0;
  std::vector<CgroupMount> mounts =
      ParseCgroupMounts("1 2 0:1 / /x rw cgroup2\nshort line\n1 2 0:1 / /y rw -\n", &malformed);
  EXPECT_TRUE(mounts.empty());
  EXPECT_EQ(malformed, 3);
}

TEST(MapCgroupPath, RootMountAppendsPath) {
  CgroupMount mount{false, "/", "/sys/fs/cgroup/memory", "rw,memory"};
  std::string dir;
  EXPECT_TRUE(MapCgroupPath("/tmp/tree/", mount, "/a/b", &dir));
  EXPECT_EQ(dir, "/tmp/tree/sys/fs/cgroup/memory/a/b");
  EXPECT_TRUE(MapCgroupPath("/", mount, "/", &dir));
  EXPECT_EQ(dir, "/sys/fs/cgroup/memory");
}

TEST(MapCgroupPath, BindMountStripsRoot) {
  // A container without a cgroup namespace: the host's /docker/c1 subtree is
  // mounted at /sys/fs/cgroup, and /proc/self/cgroup shows the host path.
  CgroupMount mount{true, "/docker/c1", "/sys/fs/cgroup", "rw"};
  std::string dir;
  EXPECT_TRUE(MapCgroupPath("/", mount, "/docker/c1", &dir));
  EXPECT_EQ(dir, "/sys/fs/cgroup");
  EXPECT_TRUE(MapCgroupPath("/", mount, "/docker/c1/worker", &dir));
  EXPECT_EQ(dir, "/sys/fs/cgroup/worker");
}

TEST(MapCgroupPath, PathOutsideRootFallsBack) {
  // A mount made outside the reader's cgroup namespace shows a root above it.
  CgroupMount mount{true, "/../../host", "/sys/fs/cgroup", "rw"};
  std::string dir;
  EXPECT_FALSE(MapCgroupPath("/", mount, "/", &dir));
  EXPECT_EQ(dir, "/sys/fs/cgroup");
  CgroupMount sibling{true, "/docker/c1", "/sys/fs/cgroup", "rw"};
  EXPECT_FALSE(MapCgroupPath("/", sibling, "/docker/c10", &dir));
}

TEST(ResolveCgroupLayout, Hybrid) {
  CgroupLayout layout;
  std::string problem;
  ASSERT_TRUE(ResolveCgroupLayout("/r", Entries(kHybridCgroup), Mounts(kHybridMountinfo),
                                  &layout, &problem));
  EXPECT_EQ(layout.memory_version, CgroupVersion::kV1);
  EXPECT_TRUE(layout.hybrid);
  EXPECT_EQ(layout.memory_cgroup_path, "/process_api/abc");
  EXPECT_EQ(layout.memory_mount_dir, "/r/sys/fs/cgroup/memory");
  EXPECT_EQ(layout.memory_dir, "/r/sys/fs/cgroup/memory/process_api/abc");
  EXPECT_EQ(layout.pressure_dir, "/r/sys/fs/cgroup/unified");
  EXPECT_EQ(problem, "");
}

TEST(ResolveCgroupLayout, PureV1) {
  std::string mountinfo =
      "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,cpu,memory\n";
  CgroupLayout layout;
  std::string problem;
  ASSERT_TRUE(ResolveCgroupLayout("/", Entries("5:cpu,memory:/svc\n"), Mounts(mountinfo),
                                  &layout, &problem));
  EXPECT_EQ(layout.memory_version, CgroupVersion::kV1);
  EXPECT_FALSE(layout.hybrid);
  EXPECT_EQ(layout.memory_dir, "/sys/fs/cgroup/memory/svc");
  EXPECT_EQ(layout.pressure_dir, "");
}

TEST(ResolveCgroupLayout, PureV2) {
  CgroupLayout layout;
  std::string problem;
  ASSERT_TRUE(ResolveCgroupLayout("/", Entries("0::/kubepods/pod1/c1\n"), Mounts(kV2Mountinfo),
                                  &layout, &problem));
  EXPECT_EQ(layout.memory_version, CgroupVersion::kV2);
  EXPECT_FALSE(layout.hybrid);
  EXPECT_EQ(layout.memory_mount_dir, "/sys/fs/cgroup");
  EXPECT_EQ(layout.memory_dir, "/sys/fs/cgroup/kubepods/pod1/c1");
  EXPECT_EQ(layout.pressure_dir, "/sys/fs/cgroup/kubepods/pod1/c1");
}

TEST(ResolveCgroupLayout, NamespaceRootIsMountPoint) {
  CgroupLayout layout;
  std::string problem;
  ASSERT_TRUE(
      ResolveCgroupLayout("/", Entries("0::/\n"), Mounts(kV2Mountinfo), &layout, &problem));
  EXPECT_EQ(layout.memory_dir, "/sys/fs/cgroup");
  EXPECT_EQ(layout.memory_dir, layout.memory_mount_dir);
}

TEST(ResolveCgroupLayout, PrefersMountContainingPath) {
  // The hierarchy is mounted twice: the whole tree, and a bind mount of the
  // subtree the process is in. The more specific mount wins.
  std::string mountinfo =
      "1 0 0:30 / /host/cgroup rw - cgroup2 cgroup2 rw\n"
      "2 0 0:30 /jobs/j1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  CgroupLayout layout;
  std::string problem;
  ASSERT_TRUE(ResolveCgroupLayout("/", Entries("0::/jobs/j1/task\n"), Mounts(mountinfo),
                                  &layout, &problem));
  EXPECT_EQ(layout.memory_dir, "/sys/fs/cgroup/task");
  EXPECT_EQ(layout.memory_mount_dir, "/sys/fs/cgroup");
}

TEST(ResolveCgroupLayout, ReportsMountOutsideNamespace) {
  std::string mountinfo = "1 0 0:30 /.. /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  CgroupLayout layout;
  std::string problem;
  ASSERT_TRUE(
      ResolveCgroupLayout("/", Entries("0::/\n"), Mounts(mountinfo), &layout, &problem));
  EXPECT_EQ(layout.memory_dir, "/sys/fs/cgroup");
  EXPECT_NE(problem.find("does not contain"), std::string::npos) << problem;
}

TEST(ResolveCgroupLayout, NoMemoryHierarchy) {
  struct Case {
    const char* cgroup;
    const char* mountinfo;
    const char* expected_problem;
  } cases[] = {
      {"4:memory:/a\n", "1 0 0:1 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
       "no cgroup mount with the memory option"},
      {"0::/a\n", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", "no cgroup2 mount"},
      {"1:cpu:/\n", kHybridMountinfo, "neither"},
      {"", kHybridMountinfo, "neither"},
  };
  for (const Case& test : cases) {
    CgroupLayout layout;
    std::string problem;
    EXPECT_FALSE(ResolveCgroupLayout("/", Entries(test.cgroup), Mounts(test.mountinfo), &layout,
                                     &problem))
        << test.cgroup;
    EXPECT_EQ(layout.memory_version, CgroupVersion::kNone) << test.cgroup;
    EXPECT_NE(problem.find(test.expected_problem), std::string::npos) << problem;
  }
}

}  // namespace
}  // namespace memward::accounting
