// GET /, /stats, /tenants, /tenants/{name} and /requests.
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "accounting/admin_endpoints.h"
#include "accounting/admin_handlers.h"
#include "accounting/admin_service.h"
#include "accounting/pressure_service.h"
#include "accounting/request_log.h"
#include "accounting/sample_table.h"
#include "accounting/tenant.h"
#include "alloc/arena_registry.h"
#include "alloc/engine.h"
#include "alloc/purge.h"
#include "base/json_writer.h"


namespace memward::accounting {
namespace {

using base::JsonWriter;

// Ended requests shown under "largest_recent" when the query has no limit.
constexpr size_t kDefaultLargest = 20;
// Maximum number of open requests listed; "open_count" counts them all.
constexpr uint32_t kMaxOpenShown = 1024;

void FinishJson(std::string* body) { body->push_back('\n'); }

// Parses the optional ?limit= query value into `limit`; returns false and
// sets a 400 response when it is not a whole number from 1 to `max`.
bool ReadLimit(const AdminRequest& request, size_t max, size_t* limit,
               AdminResponse* response) {
  const std::string* text = request.QueryValue("limit");
  if (text == nullptr) return true;
  size_t value = 0;
  bool valid = !text->empty() && text->size() <= 6;
  for (char c : *text) valid = valid && c >= '0' && c <= '9';
  if (valid) value = std::stoul(*text);
  if (!valid || value == 0 || value > max) {
    response->SetError(400, "invalid limit \"" + *text + "\"; expected 1 to " +
                                std::to_string(max));
    return false;
  }
  *limit = value;
  return true;
}

void WriteTenant(const memward_tenant_stats& stats, JsonWriter& json) {
  json.BeginObject();
  json.Key("id").Uint(stats.id);
  json.Key("name").String(stats.name);
  json.Key("live_bytes").Int(stats.live_bytes);
  if (stats.id == kProcessTenant) {
    // Untagged allocations take jemalloc's path without being counted, so
    // only the process's live bytes are known (from jemalloc's arenas).
    for (const char* key : {"peak_bytes", "allocated_bytes", "freed_bytes", "allocations",
                            "frees"}) {
      json.Key(key).Null();
    }
  } else {
    json.Key("peak_bytes").Int(stats.peak_bytes);
    json.Key("allocated_bytes").Uint(stats.allocated_bytes);
    json.Key("freed_bytes").Uint(stats.freed_bytes);
    json.Key("allocations").Uint(stats.allocations);
    json.Key("frees").Uint(stats.frees);
  }
  json.Key("soft_limit_bytes").Uint(stats.soft_limit);
  json.Key("hard_limit_bytes").Uint(stats.hard_limit);
  json.Key("enforce_hard_limit").Bool(stats.enforce_hard_limit != 0);
  json.Key("dedicated_arena").Bool(stats.dedicated_arena != 0);
  json.Key("admitted").Uint(stats.admitted);
  json.Key("shed").Uint(stats.shed);
  json.Key("rejected").Uint(stats.rejected);
  json.Key("refused_allocations").Uint(stats.refused_allocations);
  json.EndObject();
}

void HandleIndex(const AdminRequest& request, AdminResponse* response) {
  JsonWriter json(&response->body);
  json.BeginObject();
  json.Key("pid").Int(getpid());
  json.Key("version").String(memward_version());
  json.Key("endpoints").BeginArray();
  for (const AdminEndpointInfo& endpoint : ListAdminEndpoints()) {
    json.BeginObject();
    json.Key("method").String(endpoint.method);
    json.Key("path").String(endpoint.path);
    json.Key("summary").String(endpoint.summary);
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  FinishJson(&response->body);
}

// Writes jemalloc's totals as of the refresh that ReadAllTenantStats made.
void WriteHeap(JsonWriter& json) {
  alloc::HeapStatistics heap = alloc::ReadHeapStatisticsAsOfLastEpoch();
  json.Key("heap").BeginObject();
  json.Key("allocated_bytes").Uint(heap.allocated);
  json.Key("active_bytes").Uint(heap.active);
  json.Key("resident_bytes").Uint(heap.resident);
  json.Key("mapped_bytes").Uint(heap.mapped);
  json.Key("retained_bytes").Uint(heap.retained);
  json.Key("metadata_bytes").Uint(heap.metadata);
  json.Key("dirty_bytes").Uint(heap.dirty);
  json.EndObject();
}

void WriteOverhead(JsonWriter& json) {
  memward_overhead overhead = ReadOverheadAtMostOncePerSecond();
  json.Key("memward").BeginObject();
  json.Key("table_bytes").Uint(overhead.table_bytes);
  json.Key("thread_block_bytes").Uint(overhead.thread_block_bytes);
  json.Key("explicit_caches").Uint(overhead.explicit_caches);
  json.Key("explicit_cache_bytes").Uint(overhead.explicit_cache_bytes);
  json.Key("total_bytes").Uint(overhead.total_bytes);
  json.EndObject();
}

// Writes the sampler's counters and the memory of its tables and of the
// unwinders' caches.
void WriteSampler(JsonWriter& json) {
  SamplerStats stats = GetSamplerStats();
  json.Key("sampler").BeginObject();
  json.Key("interval_bytes").Int(stats.interval_bytes);
  json.Key("samples_taken").Uint(stats.samples_taken);
  json.Key("samples_dropped").Uint(stats.samples_dropped);
  json.Key("live_samples").Uint(stats.live_samples);
  json.Key("table_bytes").Uint(stats.table_bytes);
  json.Key("table_resident_bytes").Uint(stats.table_resident_bytes);
  json.Key("unwinder_cache_bytes").Uint(stats.unwinder_cache_bytes);
  json.Key("unwinder_fallbacks").Uint(stats.unwinder_fallbacks);
  json.Key("truncated_stacks").Uint(stats.truncated_stacks);
  json.Key("rule_entries").Uint(stats.rule_entries);
  json.Key("rule_home_entries").Uint(stats.rule_home_entries);
  json.Key("rule_misses").Uint(stats.rule_misses);
  json.Key("rules_not_inserted").Uint(stats.rules_not_inserted);
  json.EndObject();
}

void WriteArenas(const std::vector<memward_tenant_stats>& tenants, JsonWriter& json) {
  unsigned narenas = 0;
  size_t length = sizeof(narenas);
  mwje_mallctl("arenas.narenas", &narenas, &length, nullptr, 0);
  uint64_t dedicated = 0;
  for (const memward_tenant_stats& tenant : tenants) dedicated += tenant.dedicated_arena != 0;
  alloc::RequestPoolCounts pool = alloc::CountRequestArenas();
  json.Key("arenas").BeginObject();
  json.Key("jemalloc_arenas").Uint(narenas);
  json.Key("dedicated").Uint(dedicated);
  json.Key("request_pool").BeginObject();
  json.Key("idle").Uint(pool.idle);
  json.Key("open").Uint(pool.open);
  json.Key("draining").Uint(pool.draining);
  json.EndObject();
  json.EndObject();
}

void HandleStats(const AdminRequest& request, AdminResponse* response) {
  std::vector<memward_tenant_stats> tenants = ReadAllTenantStats();
  JsonWriter json(&response->body);
  json.BeginObject();
  json.Key("pid").Int(getpid());
  json.Key("version").String(memward_version());
  json.Key("library").String(memward_library_kind());
  WriteHeap(json);
  WriteOverhead(json);
  WriteSampler(json);
  WriteArenas(tenants, json);
  int64_t user_live = 0;
  for (const memward_tenant_stats& tenant : tenants) user_live += tenant.live_bytes;
  json.Key("tenants").BeginObject();
  json.Key("registered").Uint(tenants.size());
  json.Key("live_bytes").Int(user_live);
  json.EndObject();
  json.Key("requests").BeginObject();
  json.Key("open").Uint(alloc::CountRequestArenas().open);
  json.Key("ended").Uint(EndedRequestCount());
  json.EndObject();
  json.Key("pressure").BeginObject();
  json.Key("level").String(CurrentPressureName());
  json.EndObject();
  json.Key("admin").BeginObject();
  json.Key("socket").String(AdminSocketPath());
  json.Key("tcp_port").Int(AdminTcpPort());
  json.EndObject();
  json.EndObject();
  FinishJson(&response->body);
}

void HandleTenants(const AdminRequest& request, AdminResponse* response) {
  std::vector<memward_tenant_stats> tenants = ReadAllTenantStats();
  std::stable_sort(tenants.begin(), tenants.end(), [](const auto& a, const auto& b) {
    return a.live_bytes > b.live_bytes;
  });
  JsonWriter json(&response->body);
  json.BeginObject();
  json.Key("tenants").BeginArray();
  for (const memward_tenant_stats& tenant : tenants) WriteTenant(tenant, json);
  json.EndArray();
  json.EndObject();
  FinishJson(&response->body);
}

void HandleTenant(const AdminRequest& request, AdminResponse* response) {
  for (const memward_tenant_stats& tenant : ReadAllTenantStats()) {
    if (request.path_suffix != tenant.name) continue;
    JsonWriter json(&response->body);
    WriteTenant(tenant, json);
    FinishJson(&response->body);
    return;
  }
  response->SetError(404, "no tenant named \"" + request.path_suffix +
                              "\"; GET /tenants lists them");
}

std::string TenantName(TenantId id, const std::vector<memward_tenant_stats>& tenants) {
  for (const memward_tenant_stats& tenant : tenants) {
    if (tenant.id == id) return tenant.name;
  }
  return std::string();
}

void HandleRequests(const AdminRequest& request, AdminResponse* response) {
  size_t largest = kDefaultLargest;
  if (!ReadLimit(request, kRequestLogCapacity, &largest, response)) return;
  std::vector<memward_tenant_stats> tenants = ReadAllTenantStats();
  std::vector<alloc::OpenRequestInfo> open(kMaxOpenShown);
  uint32_t open_count = alloc::ListOpenRequests(open.data(), kMaxOpenShown);
  open.resize(std::min(open_count, kMaxOpenShown));
  std::vector<RequestRecord> recent(kRequestLogCapacity);
  recent.resize(ReadRequestLog(recent.data(), recent.size()));
  std::stable_sort(recent.begin(), recent.end(),
                   [](const auto& a, const auto& b) { return a.peak_bytes > b.peak_bytes; });
  if (recent.size() > largest) recent.resize(largest);

  JsonWriter json(&response->body);
  json.BeginObject();
  json.Key("open_count").Uint(open_count);
  json.Key("open").BeginArray();
  for (const alloc::OpenRequestInfo& info : open) {
    json.BeginObject();
    json.Key("tenant").String(TenantName(info.tenant, tenants));
    json.Key("arena_slot").Uint(info.slot);
    json.Key("generation").Uint(info.generation);
    json.Key("live_bytes").Int(info.live_bytes);
    json.Key("peak_bytes").Int(info.peak_bytes);
    json.Key("allocated_bytes").Uint(info.allocated_bytes);
    json.Key("allocations").Uint(info.allocations);
    json.EndObject();
  }
  json.EndArray();
  json.Key("ended_count").Uint(EndedRequestCount());
  json.Key("largest_recent").BeginArray();
  for (const RequestRecord& record : recent) {
    json.BeginObject();
    json.Key("sequence").Uint(record.sequence);
    json.Key("tenant").String(TenantName(record.tenant, tenants));
    json.Key("end_unix_ms").Int(record.end_unix_ns / 1000000);
    json.Key("peak_bytes").Uint(record.peak_bytes);
    json.Key("allocated_bytes").Uint(record.allocated_bytes);
    json.Key("escaped_bytes").Uint(record.escaped_bytes);
    json.Key("allocations").Uint(record.allocations);
    json.Key("frees").Uint(record.frees);
    json.Key("had_arena").Bool(record.had_arena != 0);
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
  FinishJson(&response->body);
}

}  // namespace

MemwardAllocationScope::MemwardAllocationScope() {
  uint32_t slot = alloc::MemwardArenaSlot();
  if (slot == 0) return;
  saved_ = alloc::EnterScope(kMemwardTenant, slot, 0);
  entered_ = true;
}

MemwardAllocationScope::~MemwardAllocationScope() {
  if (entered_) alloc::ExitScope(saved_);
}

memward_overhead ReadOverheadAtMostOncePerSecond() {
  // Guards the cached copy; a leaf lock that no allocation path takes.
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  static memward_overhead cached = {};
  static int64_t cached_at_ns = 0;
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  const int64_t now_ns = static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
  pthread_mutex_lock(&lock);
  if (cached_at_ns == 0 || now_ns - cached_at_ns >= 1000000000) {
    memward_overhead_get(&cached);
    cached_at_ns = now_ns;
  }
  memward_overhead result = cached;
  pthread_mutex_unlock(&lock);
  return result;
}

std::vector<memward_tenant_stats> ReadAllTenantStats() {
  std::vector<memward_tenant_stats> stats(64);
  size_t count = 0;
  while (true) {
    if (memward_tenant_stats_list(stats.data(), stats.size(), &count) != MEMWARD_OK) return {};
    if (count <= stats.size()) break;
    stats.resize(count + 16);  // tenants registered meanwhile get room too
  }
  // The list contains registered tenants only, so it may be shorter than count.
  size_t written = 0;
  while (written < stats.size() && written < count && stats[written].name[0] != '\0') written++;
  stats.resize(written);
  return stats;
}

// Reading the level must not start the pressure ladder: a scrape of
// /metrics would otherwise turn on cgroup watching.
const char* CurrentPressureName() {
  PressureLevel level = PressureLevel::kNormal;
  if (!ReadPressureLevelIfStarted(&level)) return "off";
  return PressureLevelName(level);
}

void RegisterStatsEndpoints() {
  RegisterAdminEndpoint("GET", "/", "this index of endpoints", HandleIndex);
  RegisterAdminEndpoint("GET", "/stats", "process totals: jemalloc heap, memward overhead, "
                        "arenas, tenants, requests, pressure level", HandleStats);
  RegisterAdminEndpoint("GET", "/tenants", "every tenant's counters, by live bytes",
                        HandleTenants);
  RegisterAdminEndpoint("GET", "/tenants/*", "one tenant's counters by name", HandleTenant);
  RegisterAdminEndpoint("GET", "/requests", "open requests and the largest recent ones "
                        "(?limit=N)", HandleRequests);
}

void RegisterCoreAdminEndpoints() {
  RegisterStatsEndpoints();
  RegisterConfigEndpoints();
  RegisterMetricsEndpoint();
}

}  // namespace memward::accounting
