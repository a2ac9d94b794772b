// The cgroup monitor: reads the process's memory cgroup (limit, high or
// soft limit, usage, working set, event counters, PSI averages) and owns
// the kernel's pressure notification for the warden's epoll.
//
// Files read, with R the prefix (the cgroup_root setting, "/" live):
//   R/proc/self/cgroup, R/proc/self/mountinfo  discovery (cgroup_layout.h)
//   v2: memory.max, memory.high, memory.current, memory.stat
//       (inactive_file), memory.events, memory.pressure
//   v1: memory.limit_in_bytes, memory.soft_limit_in_bytes,
//       memory.usage_in_bytes, memory.stat (total_inactive_file),
//       memory.failcnt, memory.oom_control (oom_kill), memory.pressure_level
//   R/proc/meminfo (MemTotal), else sysconf, for physical memory
//   R/proc/pressure/memory when the cgroup has no memory.pressure
// Every Read() re-reads the files, so limits changed at run time are seen;
// when /proc/self/cgroup shows another memory path, the monitor discovers
// the layout again and reopens the pressure source (generation() changes).
//
// Errors: a missing, unreadable or malformed file is reported once per file
// on stderr (which file, what was wrong, what is used instead) and never
// stops the host. Without a readable memory controller the limit is
// physical memory and CgroupReading::ok is false.
//
// Thread safety: every member takes the monitor's mutex, which is never
// taken inside malloc (Read allocates while holding it, so the fork
// handlers take it before the allocator's locks).
#ifndef MEMWARD_ACCOUNTING_CGROUP_MONITOR_H_
#define MEMWARD_ACCOUNTING_CGROUP_MONITOR_H_

#include <stdint.h>

#include <mutex>
#include <string>

#include "accounting/cgroup_files.h"
#include "accounting/cgroup_layout.h"
#include "accounting/pressure_source.h"

namespace memward::accounting {

// Counters since the cgroup was created. v2: memory.events. v1: `max` is
// memory.failcnt (times usage hit the limit), `oom_kill` is
// memory.oom_control's oom_kill, and low, high and oom stay 0.
struct MemoryEvents {
  uint64_t low, high, max, oom, oom_kill;
};

struct CgroupReading {
  bool ok;               // false: no memory controller readable
  uint64_t limit_bytes;  // effective limit: min over the path and physical memory
  uint64_t high_bytes;   // memory.high (v2) or v1 soft limit; UINT64_MAX for none
  uint64_t usage_bytes;
  uint64_t working_set_bytes;  // usage minus inactive file pages (as kubelet computes it)
  MemoryEvents events;
  double psi_some_avg10, psi_full_avg10;  // percent; -1 when unavailable
  uint64_t physical_memory_bytes;
  // True when a cgroup limit on the path is below physical memory.
  bool limit_from_cgroup;
};

class CgroupMonitor {
 public:
  CgroupMonitor() = default;
  CgroupMonitor(const CgroupMonitor&) = delete;
  CgroupMonitor& operator=(const CgroupMonitor&) = delete;

  // Finds the memory cgroup from `proc_self_dir`/cgroup and /mountinfo,
  // with every mount point read under `cgroup_fs_prefix`, and opens the
  // pressure source. Returns false when no memory hierarchy was found (the
  // reason is logged once); Read() then reports physical memory.
  bool Discover(const char* cgroup_fs_prefix, const char* proc_self_dir);
  // Discover(root, root + "/proc/self"); `root` is the cgroup_root setting.
  bool DiscoverUnderRoot(const char* root);

  // Reads every value now. Called on the warden thread each tick.
  CgroupReading Read();

  // Reads the cgroup's usage alone (memory.current or
  // memory.usage_in_bytes) with one pread(2) on a descriptor kept open
  // since the last Read(), so the warden can poll it often. Returns false
  // when there is no such descriptor yet or the read failed; limits and
  // the cgroup path are only checked by Read().
  bool ReadUsage(uint64_t* usage_bytes);

  int pressure_event_fd() const;         // -1 when none
  uint32_t pressure_event_mask() const;  // EPOLLPRI or EPOLLIN
  void AcknowledgePressureEvent();

  PressureSourceKind pressure_source() const;
  // The file the pressure source is bound to; empty for kNone.
  std::string pressure_source_path() const;
  // The PSI file the averages are read from; empty when there is none.
  std::string psi_path() const;
  CgroupLayout layout() const;
  // Changes whenever discovery runs or the pressure descriptor is replaced,
  // so the warden can watch the new pressure_event_fd() in place of the old.
  uint64_t generation() const;

  // Fork handlers. The parent holds the mutex across fork. The child closes
  // the inherited pressure descriptors (they stay bound to the parent's
  // registration) and opens its own on the next Read().
  void LockForFork();
  void UnlockInParent();
  void ResetInChild();

 private:
  bool DiscoverLocked();
  void OpenPressureSourceLocked();
  void OpenUsageFileLocked();
  void CloseUsageFileLocked();
  bool MemoryPathChangedLocked();
  uint64_t ReadPhysicalMemoryLocked();
  void ReadV2Locked(CgroupReading* reading);
  void ReadV1Locked(CgroupReading* reading);
  // Sets working_set_bytes from usage and the `key` line of `stat` (the
  // text of memory.stat, empty when it could not be read).
  void ApplyWorkingSet(const std::string& stat, const char* key, CgroupReading* reading);

  mutable std::mutex mutex_;
  // Guarded by mutex_.
  std::string prefix_;
  std::string proc_self_dir_;
  CgroupLayout layout_;
  PressureSource pressure_;
  std::string psi_path_;
  CgroupFileReader reader_;
  bool reopen_pressure_ = false;
  // The usage file of the memory cgroup, opened by Read(); -1 when closed.
  int usage_fd_ = -1;
  uint64_t generation_ = 0;
};

// The process's monitor, discovered under the cgroup_root setting on first
// use. Also registers GET /cgroup with the admin endpoint table.
CgroupMonitor& ProcessCgroupMonitor();

// Fork handlers for the process's monitor; they do nothing before its first use.
void LockCgroupMonitorForFork();
void UnlockCgroupMonitorInParent();
void ResetCgroupMonitorInChild();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_CGROUP_MONITOR_H_
