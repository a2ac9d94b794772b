// GET /cgroup on the admin server: the memory cgroup's layout, limits,
// usage, event counters, PSI averages and the pressure source in use.
#ifndef MEMWARD_ACCOUNTING_CGROUP_ENDPOINT_H_
#define MEMWARD_ACCOUNTING_CGROUP_ENDPOINT_H_

#include <string>

#include "accounting/admin_endpoints.h"
#include "accounting/cgroup_monitor.h"

namespace memward::accounting {

// Reads `monitor` now and appends the JSON object that GET /cgroup returns.
void AppendCgroupJson(CgroupMonitor& monitor, std::string* out);

// Serves one request for GET /cgroup from `monitor`. The endpoint takes no
// query parameters, so any query is rejected with 400.
void ServeCgroupRequest(CgroupMonitor& monitor, const AdminRequest& request,
                        AdminResponse* response);

// Registers GET /cgroup for the process's monitor. Returns false when the
// endpoint table rejected it (full, or registered already).
bool RegisterCgroupEndpoint();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_CGROUP_ENDPOINT_H_
