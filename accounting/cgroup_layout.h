// Cgroup discovery: parsing /proc/self/cgroup and /proc/self/mountinfo into
// the directories of the process's memory cgroup that the monitor reads.
//
// Three layouts are recognised:
//   v2      one cgroup2 mount; /proc/self/cgroup has the line "0::<path>".
//   v1      a cgroup (v1) mount whose super options list "memory", and a
//           line "<id>:<controllers>:<path>" whose controllers list memory.
//   hybrid  v1 for the memory controller plus a cgroup2 mount, which is
//           used only for its memory.pressure file (PSI).
// When both could serve, the v1 memory controller wins: under a hybrid
// layout the v2 tree carries no memory controller.
//
// Cgroup namespaces and bind mounts: field 4 of a mountinfo line (the root)
// is the part of the hierarchy that the mount shows, and /proc/self/cgroup's
// path is relative to the reader's cgroup namespace. The directory is the
// mount point plus the cgroup path with the mount's root removed. A
// namespace root shows "/" in /proc/self/cgroup, so it maps to the mount
// point itself.
//
// Paths in a CgroupLayout carry the file-system prefix (the cgroup_root
// setting), so that tests can point the monitor at a prepared tree.
#ifndef MEMWARD_ACCOUNTING_CGROUP_LAYOUT_H_
#define MEMWARD_ACCOUNTING_CGROUP_LAYOUT_H_

#include <stdint.h>

#include <string>
#include <string_view>
#include <vector>

namespace memward::accounting {

enum class CgroupVersion : uint8_t { kNone, kV1, kV2 };

// One line of /proc/self/cgroup: "<hierarchy id>:<controllers>:<path>".
struct ProcCgroupEntry {
  int hierarchy_id = 0;
  std::string controllers;  // comma-separated; empty for the v2 line
  std::string path;
};

// One cgroup or cgroup2 mount from /proc/self/mountinfo.
struct CgroupMount {
  bool v2 = false;
  std::string root;           // field 4: the subtree of the hierarchy shown
  std::string mount_point;    // field 5, without the prefix
  std::string super_options;  // v1: lists the controllers ("rw,memory")
};

struct CgroupLayout {
  CgroupVersion memory_version = CgroupVersion::kNone;
  // True for v1 memory with a cgroup2 mount beside it.
  bool hybrid = false;
  // The memory cgroup's path as /proc/self/cgroup shows it ("/a/b").
  std::string memory_cgroup_path;
  // The mount point of the memory hierarchy, prefix included. The monitor
  // walks limits up from memory_dir to here and no further.
  std::string memory_mount_dir;
  // The process's memory cgroup directory, prefix included.
  std::string memory_dir;
  // The cgroup2 directory whose memory.pressure is used (memory_dir under
  // v2, the v2 tree's directory under hybrid); empty when there is none.
  std::string pressure_dir;
};

// Parses the text of /proc/self/cgroup. Malformed lines are skipped and
// counted in `*malformed_lines` when it is not null.
std::vector<ProcCgroupEntry> ParseProcCgroup(std::string_view text, int* malformed_lines);

// Parses the cgroup and cgroup2 mounts from the text of /proc/self/mountinfo
// (other mounts are ignored; octal escapes such as "\040" are decoded).
std::vector<CgroupMount> ParseCgroupMounts(std::string_view text, int* malformed_lines);

// Returns the line of the memory hierarchy for `version` (the v1 line whose
// controllers list memory, or the v2 line "0::<path>"), or nullptr.
const ProcCgroupEntry* FindMemoryEntry(const std::vector<ProcCgroupEntry>& entries,
                                       CgroupVersion version);

// Maps `cgroup_path` inside `mount` to a directory under `prefix`. Returns
// false, leaving `*dir` at the mount point, when the path is not inside
// the mount's root (a mount from outside the reader's cgroup namespace).
bool MapCgroupPath(std::string_view prefix, const CgroupMount& mount, std::string_view cgroup_path,
                   std::string* dir);

// Builds the layout from parsed entries and mounts. Returns false (and a
// layout with memory_version kNone) when no memory hierarchy is found, and
// stores the reason in `*problem`.
bool ResolveCgroupLayout(std::string_view prefix, const std::vector<ProcCgroupEntry>& entries,
                         const std::vector<CgroupMount>& mounts, CgroupLayout* layout,
                         std::string* problem);

const char* CgroupVersionName(CgroupVersion version);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_CGROUP_LAYOUT_H_
