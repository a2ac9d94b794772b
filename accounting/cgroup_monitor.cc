#include "accounting/cgroup_monitor.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "accounting/cgroup_files.h"

namespace memward::accounting {
namespace {

// PSI trigger: wake the warden when tasks of the cgroup stalled on memory
// for 150 ms within 1 s (15 %), a level at which reclaim is already
// costing latency. Windows may be at most 10 s long. An unprivileged
// process (Linux 6.4 and later) needs a multiple of 2 s, so the same share
// over 2 s is tried when the first trigger is rejected.
constexpr uint32_t kPsiStallUs = 150 * 1000;
constexpr uint32_t kPsiWindowUs = 1000 * 1000;
constexpr uint32_t kUnprivilegedPsiStallUs = 300 * 1000;
constexpr uint32_t kUnprivilegedPsiWindowUs = 2000 * 1000;

// v1 "medium" fires when the kernel is reclaiming at a moderate rate,
// "low" on any reclaim (including page cache), which would wake the
// warden constantly.
constexpr const char* kV1PressureLevel = "medium";

// v1 writes "no limit" as the largest page-aligned 63-bit count
// (9223372036854771712 with 4 KiB pages). Anything above 2^62 bytes is
// treated as no limit, whatever the page size.
constexpr uint64_t kV1NoLimitFloor = uint64_t{1} << 62;

const char* kNoLimitFallback = "using the other limits on the path and physical memory";

// The directories from `dir` up to `mount_dir`, innermost first. A `dir`
// outside `mount_dir` yields `dir` alone.
std::vector<std::string> PathUpToMount(const std::string& dir, const std::string& mount_dir) {
  std::vector<std::string> path{dir};
  bool under_mount = dir.size() > mount_dir.size() &&
                     dir.compare(0, mount_dir.size(), mount_dir) == 0 &&
                     (mount_dir.back() == '/' || dir[mount_dir.size()] == '/');
  if (!under_mount) return path;
  std::string current = dir;
  while (current.size() > mount_dir.size()) {
    size_t slash = current.rfind('/');
    if (slash == std::string::npos || slash < mount_dir.size()) {
      current = mount_dir;
    } else {
      current.resize(slash);
    }
    path.push_back(current);
  }
  return path;
}

uint64_t SystemPhysicalMemory() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return UINT64_MAX;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

bool FileExists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

}  // namespace

bool CgroupMonitor::Discover(const char* cgroup_fs_prefix, const char* proc_self_dir) {
  std::lock_guard<std::mutex> lock(mutex_);
  // Kept without a trailing '/', so the live system's "/" is "" and paths
  // such as prefix_ + "/proc/meminfo" read naturally in messages.
  prefix_ = cgroup_fs_prefix;
  while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
  proc_self_dir_ = proc_self_dir;
  return DiscoverLocked();
}

bool CgroupMonitor::DiscoverUnderRoot(const char* root) {
  std::string proc_self(root);
  while (!proc_self.empty() && proc_self.back() == '/') proc_self.pop_back();
  proc_self += "/proc/self";
  return Discover(root, proc_self.c_str());
}

bool CgroupMonitor::DiscoverLocked() {
  CgroupFileReader& reader = reader_;
  const char* fallback = "no memory cgroup, so memward uses physical memory as the limit";
  layout_ = CgroupLayout();
  psi_path_.clear();
  CloseUsageFileLocked();
  generation_++;

  std::string cgroup_text, mountinfo_text;
  std::string cgroup_path = proc_self_dir_ + "/cgroup";
  std::string mountinfo_path = proc_self_dir_ + "/mountinfo";
  bool read =
      reader.ReadText(cgroup_path, true, fallback, &cgroup_text) == CgroupFileReader::Result::kOk &&
      reader.ReadText(mountinfo_path, true, fallback, &mountinfo_text) ==
          CgroupFileReader::Result::kOk;

  bool found = false;
  if (read) {
    int bad_cgroup_lines = 0, bad_mount_lines = 0;
    std::vector<ProcCgroupEntry> entries = ParseProcCgroup(cgroup_text, &bad_cgroup_lines);
    std::vector<CgroupMount> mounts = ParseCgroupMounts(mountinfo_text, &bad_mount_lines);
    if (bad_cgroup_lines > 0) {
      reader.Report(cgroup_path, std::to_string(bad_cgroup_lines) + " malformed lines",
                    "skipping them");
    }
    if (bad_mount_lines > 0) {
      reader.Report(mountinfo_path, std::to_string(bad_mount_lines) + " malformed lines",
                    "skipping them");
    }
    std::string problem;
    found = ResolveCgroupLayout(prefix_, entries, mounts, &layout_, &problem);
    if (!problem.empty()) {
      reader.Report("discovery under " + (prefix_.empty() ? "/" : prefix_), problem,
                    found ? "reading the cgroup at the mount point instead" : fallback);
    }
  }

  if (found && !layout_.pressure_dir.empty() &&
      FileExists(layout_.pressure_dir + "/memory.pressure")) {
    psi_path_ = layout_.pressure_dir + "/memory.pressure";
  } else {
    std::string system_psi = prefix_ + "/proc/pressure/memory";
    if (FileExists(system_psi)) psi_path_ = system_psi;
  }
  OpenPressureSourceLocked();
  return found;
}

void CgroupMonitor::OpenPressureSourceLocked() {
  pressure_.Close();
  reopen_pressure_ = false;
  generation_++;
  std::string reasons;
  std::string error;

  if (layout_.memory_version == CgroupVersion::kV1) {
    if (pressure_.OpenV1PressureLevel(layout_.memory_dir, kV1PressureLevel, &error)) return;
    reasons += error;
  }
  if (!psi_path_.empty()) {
    if (pressure_.OpenPsiTrigger(psi_path_, kPsiStallUs, kPsiWindowUs, &error)) return;
    std::string first_error = error;
    if (pressure_.OpenPsiTrigger(psi_path_, kUnprivilegedPsiStallUs, kUnprivilegedPsiWindowUs,
                                 &error)) {
      return;
    }
    reasons += (reasons.empty() ? "" : "; ") + first_error;
  }
  if (reasons.empty()) reasons = "neither memory.pressure nor /proc/pressure/memory exists";
  reader_.Report("pressure source", "no kernel notification: " + reasons,
                 "the warden reads usage and PSI averages on its timer instead");
}

void CgroupMonitor::OpenUsageFileLocked() {
  const char* name = nullptr;
  if (layout_.memory_version == CgroupVersion::kV2) name = "/memory.current";
  if (layout_.memory_version == CgroupVersion::kV1) name = "/memory.usage_in_bytes";
  if (name == nullptr) return;
  // A failure needs no report here: Read() reports the same file.
  usage_fd_ = open((layout_.memory_dir + name).c_str(), O_RDONLY | O_CLOEXEC);
}

void CgroupMonitor::CloseUsageFileLocked() {
  if (usage_fd_ >= 0) close(usage_fd_);
  usage_fd_ = -1;
}

bool CgroupMonitor::ReadUsage(uint64_t* usage_bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (usage_fd_ < 0) return false;
  char text[32];
  const ssize_t length = pread(usage_fd_, text, sizeof(text) - 1, 0);
  if (length <= 0) return false;
  text[length] = '\0';
  char* end = nullptr;
  const unsigned long long value = strtoull(text, &end, 10);
  if (end == text) return false;
  *usage_bytes = value;
  return true;
}

bool CgroupMonitor::MemoryPathChangedLocked() {
  if (layout_.memory_version == CgroupVersion::kNone) return false;
  std::string text;
  if (reader_.ReadText(proc_self_dir_ + "/cgroup", true, "keeping the cgroup found before",
                       &text) != CgroupFileReader::Result::kOk) {
    return false;
  }
  std::vector<ProcCgroupEntry> entries = ParseProcCgroup(text, nullptr);
  const ProcCgroupEntry* entry = FindMemoryEntry(entries, layout_.memory_version);
  return entry != nullptr && entry->path != layout_.memory_cgroup_path;
}

CgroupReading CgroupMonitor::Read() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (MemoryPathChangedLocked()) DiscoverLocked();
  if (reopen_pressure_) OpenPressureSourceLocked();
  if (usage_fd_ < 0) OpenUsageFileLocked();

  CgroupReading reading{};
  reading.ok = false;
  reading.high_bytes = UINT64_MAX;
  reading.psi_some_avg10 = -1;
  reading.psi_full_avg10 = -1;
  reading.physical_memory_bytes = ReadPhysicalMemoryLocked();
  reading.limit_bytes = reading.physical_memory_bytes;

  if (layout_.memory_version == CgroupVersion::kV2) ReadV2Locked(&reading);
  if (layout_.memory_version == CgroupVersion::kV1) ReadV1Locked(&reading);
  reading.limit_from_cgroup = reading.limit_bytes < reading.physical_memory_bytes;

  if (!psi_path_.empty()) {
    std::string text;
    if (reader_.ReadText(psi_path_, true, "PSI averages are reported as -1", &text) ==
            CgroupFileReader::Result::kOk &&
        !ParsePsiAverages(text, &reading.psi_some_avg10, &reading.psi_full_avg10)) {
      reader_.Report(psi_path_, "no valid \"some avg10=\" line", "PSI averages are reported as -1");
    }
  }
  return reading;
}

uint64_t CgroupMonitor::ReadPhysicalMemoryLocked() {
  // MemTotal under the prefix lets a prepared tree state its machine's size;
  // a tree without proc/meminfo gets this machine's.
  std::string meminfo = prefix_ + "/proc/meminfo";
  const char* fallback = "using sysconf(_SC_PHYS_PAGES)";
  std::string text;
  if (reader_.ReadText(meminfo, false, fallback, &text) != CgroupFileReader::Result::kOk) {
    return SystemPhysicalMemory();
  }
  uint64_t bytes = 0;
  if (FindMeminfoBytes(text, "MemTotal", &bytes) && bytes > 0) return bytes;
  reader_.Report(meminfo, "no valid \"MemTotal: <number> kB\" line", fallback);
  return SystemPhysicalMemory();
}

void CgroupMonitor::ReadV2Locked(CgroupReading* reading) {
  CgroupFileReader& reader = reader_;
  std::vector<std::string> path = PathUpToMount(layout_.memory_dir, layout_.memory_mount_dir);
  for (const std::string& dir : path) {
    // The root of a v2 hierarchy has no memory.max or memory.high; a missing
    // file is only reported for the process's own, non-root cgroup.
    bool own = dir == layout_.memory_dir && dir != layout_.memory_mount_dir;
    uint64_t value;
    if (reader.ReadBytes(dir + "/memory.max", true, own, kNoLimitFallback, &value) ==
        CgroupFileReader::Result::kOk) {
      reading->limit_bytes = std::min(reading->limit_bytes, value);
    }
    if (reader.ReadBytes(dir + "/memory.high", true, own, "treating memory.high as unset",
                         &value) == CgroupFileReader::Result::kOk) {
      reading->high_bytes = std::min(reading->high_bytes, value);
    }
  }

  const std::string& dir = layout_.memory_dir;
  bool own_is_root = dir == layout_.memory_mount_dir;
  reading->ok = reader.ReadBytes(dir + "/memory.current", false, true,
                                 "no usage, so the reading is marked not ok",
                                 &reading->usage_bytes) == CgroupFileReader::Result::kOk;
  std::string stat;
  reader.ReadText(dir + "/memory.stat", true, "the working set equals usage", &stat);
  ApplyWorkingSet(stat, "inactive_file", reading);

  std::string text;
  if (reader.ReadText(dir + "/memory.events", !own_is_root, "event counters stay 0", &text) ==
      CgroupFileReader::Result::kOk) {
    FindKeyedValue(text, "low", &reading->events.low);
    FindKeyedValue(text, "high", &reading->events.high);
    FindKeyedValue(text, "max", &reading->events.max);
    FindKeyedValue(text, "oom", &reading->events.oom);
    FindKeyedValue(text, "oom_kill", &reading->events.oom_kill);
  }
}

void CgroupMonitor::ReadV1Locked(CgroupReading* reading) {
  CgroupFileReader& reader = reader_;
  std::vector<std::string> path = PathUpToMount(layout_.memory_dir, layout_.memory_mount_dir);
  for (const std::string& dir : path) {
    bool own = dir == layout_.memory_dir;
    uint64_t value;
    if (reader.ReadBytes(dir + "/memory.limit_in_bytes", false, own, kNoLimitFallback, &value) ==
        CgroupFileReader::Result::kOk) {
      reading->limit_bytes = std::min(reading->limit_bytes, value);
    }
  }

  const std::string& dir = layout_.memory_dir;
  // A bind mount of a subtree hides the ancestors' files, but the kernel
  // reports the smallest limit over every ancestor in memory.stat.
  std::string stat;
  uint64_t hierarchical = 0;
  if (reader.ReadText(dir + "/memory.stat", true, "the working set equals usage", &stat) ==
          CgroupFileReader::Result::kOk &&
      FindKeyedValue(stat, "hierarchical_memory_limit", &hierarchical)) {
    reading->limit_bytes = std::min(reading->limit_bytes, hierarchical);
  }

  uint64_t soft = 0;
  if (reader.ReadBytes(dir + "/memory.soft_limit_in_bytes", false, true,
                       "treating the soft limit as unset",
                       &soft) == CgroupFileReader::Result::kOk &&
      soft < kV1NoLimitFloor) {
    reading->high_bytes = soft;
  }

  reading->ok = reader.ReadBytes(dir + "/memory.usage_in_bytes", false, true,
                                 "no usage, so the reading is marked not ok",
                                 &reading->usage_bytes) == CgroupFileReader::Result::kOk;
  ApplyWorkingSet(stat, "total_inactive_file", reading);

  reader.ReadBytes(dir + "/memory.failcnt", false, true, "the max event counter stays 0",
                   &reading->events.max);
  // Older kernels show only oom_kill_disable and under_oom here, without
  // the oom_kill line, and the counter then stays 0.
  std::string oom_control;
  if (reader.ReadText(dir + "/memory.oom_control", true, "the oom_kill counter stays 0",
                      &oom_control) == CgroupFileReader::Result::kOk) {
    FindKeyedValue(oom_control, "oom_kill", &reading->events.oom_kill);
  }
}

void CgroupMonitor::ApplyWorkingSet(const std::string& stat, const char* key,
                                    CgroupReading* reading) {
  // Working set as kubelet computes it: usage minus inactive file pages,
  // which the kernel can drop without writing anything, floored at 0.
  reading->working_set_bytes = reading->usage_bytes;
  if (stat.empty()) return;
  uint64_t inactive_file = 0;
  if (!FindKeyedValue(stat, key, &inactive_file)) {
    reader_.Report(layout_.memory_dir + "/memory.stat",
                   std::string("no valid \"") + key + " <number>\" line",
                   "the working set equals usage");
    return;
  }
  reading->working_set_bytes =
      inactive_file < reading->usage_bytes ? reading->usage_bytes - inactive_file : 0;
}

int CgroupMonitor::pressure_event_fd() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pressure_.fd();
}

uint32_t CgroupMonitor::pressure_event_mask() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pressure_.mask();
}

void CgroupMonitor::AcknowledgePressureEvent() {
  std::lock_guard<std::mutex> lock(mutex_);
  pressure_.Acknowledge();
}

PressureSourceKind CgroupMonitor::pressure_source() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pressure_.kind();
}

std::string CgroupMonitor::pressure_source_path() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pressure_.path();
}

std::string CgroupMonitor::psi_path() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return psi_path_;
}

CgroupLayout CgroupMonitor::layout() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return layout_;
}

uint64_t CgroupMonitor::generation() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return generation_;
}

void CgroupMonitor::LockForFork() { mutex_.lock(); }

void CgroupMonitor::UnlockInParent() { mutex_.unlock(); }

void CgroupMonitor::ResetInChild() {
  // The forking thread took the mutex in LockForFork and is the only thread
  // in the child, so it can release it. close(2) is all that runs here;
  // reopening allocates and waits for the next Read().
  pressure_.Close();
  CloseUsageFileLocked();
  if (!proc_self_dir_.empty()) reopen_pressure_ = true;
  generation_++;
  mutex_.unlock();
}

}  // namespace memward::accounting
