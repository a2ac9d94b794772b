// The process's cgroup monitor, discovered under the cgroup_root setting,
// and its fork handlers and admin endpoint.
#include <atomic>

#include "accounting/cgroup_endpoint.h"
#include "accounting/cgroup_monitor.h"
#include "alloc/bootstrap.h"
#include "base/settings.h"

namespace memward::accounting {
namespace {

// Set once the monitor is discovered; the fork handlers skip a null.
std::atomic<CgroupMonitor*> g_process_monitor{nullptr};

void HandleCgroupRequest(const AdminRequest& request, AdminResponse* response) {
  ServeCgroupRequest(ProcessCgroupMonitor(), request, response);
}

CgroupMonitor* CreateProcessMonitor() {
  // Never destroyed: the warden thread may still read it while the process
  // runs its exit handlers.
  auto* monitor = new CgroupMonitor();
  monitor->DiscoverUnderRoot(alloc::CurrentSettings().GetText(base::SettingId::kCgroupRoot));
  g_process_monitor.store(monitor, std::memory_order_release);
  RegisterCgroupEndpoint();
  return monitor;
}

}  // namespace

CgroupMonitor& ProcessCgroupMonitor() {
  static CgroupMonitor* monitor = CreateProcessMonitor();
  return *monitor;
}

bool RegisterCgroupEndpoint() {
  return RegisterAdminEndpoint(
      "GET", "/cgroup",
      "memory cgroup layout, limit, usage, working set, events, PSI and pressure source",
      HandleCgroupRequest);
}

void LockCgroupMonitorForFork() {
  CgroupMonitor* monitor = g_process_monitor.load(std::memory_order_acquire);
  if (monitor != nullptr) monitor->LockForFork();
}

void UnlockCgroupMonitorInParent() {
  CgroupMonitor* monitor = g_process_monitor.load(std::memory_order_acquire);
  if (monitor != nullptr) monitor->UnlockInParent();
}

void ResetCgroupMonitorInChild() {
  CgroupMonitor* monitor = g_process_monitor.load(std::memory_order_acquire);
  if (monitor != nullptr) monitor->ResetInChild();
}

}  // namespace memward::accounting
