#include "accounting/cgroup_endpoint.h"

#include "base/json_writer.h"

namespace memward::accounting {
namespace {

// Writes a byte count, or null for "no limit" (UINT64_MAX).
void WriteLimit(base::JsonWriter& json, uint64_t bytes) {
  if (bytes == UINT64_MAX) {
    json.Null();
  } else {
    json.Uint(bytes);
  }
}

// Writes a PSI percentage, or null when it is unavailable (-1).
void WritePercent(base::JsonWriter& json, double percent) {
  if (percent < 0) {
    json.Null();
  } else {
    json.Double(percent);
  }
}

void WriteLayout(base::JsonWriter& json, const CgroupLayout& layout) {
  json.Key("layout").BeginObject();
  json.Key("version").String(CgroupVersionName(layout.memory_version));
  json.Key("hybrid").Bool(layout.hybrid);
  json.Key("memory_cgroup_path").String(layout.memory_cgroup_path);
  json.Key("memory_dir").String(layout.memory_dir);
  json.Key("memory_mount_dir").String(layout.memory_mount_dir);
  json.Key("pressure_dir").String(layout.pressure_dir);
  json.EndObject();
}

}  // namespace

void AppendCgroupJson(CgroupMonitor& monitor, std::string* out) {
  CgroupReading reading = monitor.Read();
  base::JsonWriter json(out);
  json.BeginObject();
  json.Key("ok").Bool(reading.ok);
  WriteLayout(json, monitor.layout());

  json.Key("limit_bytes").Uint(reading.limit_bytes);
  json.Key("limit_from_cgroup").Bool(reading.limit_from_cgroup);
  json.Key("physical_memory_bytes").Uint(reading.physical_memory_bytes);
  json.Key("high_bytes");
  WriteLimit(json, reading.high_bytes);
  json.Key("usage_bytes").Uint(reading.usage_bytes);
  json.Key("working_set_bytes").Uint(reading.working_set_bytes);

  json.Key("events").BeginObject();
  json.Key("low").Uint(reading.events.low);
  json.Key("high").Uint(reading.events.high);
  json.Key("max").Uint(reading.events.max);
  json.Key("oom").Uint(reading.events.oom);
  json.Key("oom_kill").Uint(reading.events.oom_kill);
  json.EndObject();

  json.Key("psi").BeginObject();
  json.Key("path").String(monitor.psi_path());
  json.Key("some_avg10");
  WritePercent(json, reading.psi_some_avg10);
  json.Key("full_avg10");
  WritePercent(json, reading.psi_full_avg10);
  json.EndObject();

  json.Key("pressure_source").BeginObject();
  json.Key("kind").String(PressureSourceName(monitor.pressure_source()));
  json.Key("path").String(monitor.pressure_source_path());
  json.EndObject();
  json.EndObject();
}

void ServeCgroupRequest(CgroupMonitor& monitor, const AdminRequest& request,
                        AdminResponse* response) {
  if (!request.query.empty()) {
    response->SetError(400, "unknown query parameter \"" + request.query.front().first +
                                "\": GET /cgroup takes no parameters");
    return;
  }
  response->status = 200;
  response->body.clear();
  AppendCgroupJson(monitor, &response->body);
}

}  // namespace memward::accounting
