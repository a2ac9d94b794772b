// GET /metrics and memward_metrics_text: memward's numbers in Prometheus's
// text exposition format (version 0.0.4).
//
// Names follow Prometheus's conventions: the memward_ prefix, the unit in
// the name (_bytes), _total on counters. Tenants are a label; only the
// `metrics_max_tenants` user tenants with the most live bytes get their own
// label value, and the summable counters of the rest are added under
// tenant="other", so a process with thousands of tenants cannot flood the
// scraper with series.
#include <string.h>

#include <algorithm>

#include "accounting/admin_endpoints.h"
#include "accounting/admin_handlers.h"
#include "accounting/admin_service.h"
#include "accounting/request_log.h"
#include "accounting/sample_table.h"
#include "accounting/tenant.h"
#include "alloc/arena_registry.h"
#include "alloc/bootstrap.h"
#include "alloc/chunk_region.h"
#include "alloc/macros.h"
#include "alloc/purge.h"
#include "alloc/scope.h"

namespace memward::accounting {
namespace {

constexpr char kOtherTenant[] = "other";

void AppendHeader(const char* name, const char* type, const char* help, std::string* out) {
  *out += "# HELP ";
  *out += name;
  *out += ' ';
  *out += help;
  *out += "\n# TYPE ";
  *out += name;
  *out += ' ';
  *out += type;
  *out += '\n';
}

void AppendLabelValue(std::string_view value, std::string* out) {
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out->push_back('\\');
      out->push_back(c);
    } else if (c == '\n') {
      *out += "\\n";
    } else {
      out->push_back(c);
    }
  }
}

// Appends `name{labels} value`; `labels` is "tenant=\"...\"" text or empty.
void AppendSample(const char* name, const std::string& labels, int64_t value, std::string* out) {
  *out += name;
  if (!labels.empty()) {
    out->push_back('{');
    *out += labels;
    out->push_back('}');
  }
  out->push_back(' ');
  *out += std::to_string(value);
  out->push_back('\n');
}

void AppendGauge(const char* name, const char* help, int64_t value, std::string* out) {
  AppendHeader(name, "gauge", help, out);
  AppendSample(name, std::string(), value, out);
}

void AppendCounter(const char* name, const char* help, uint64_t value, std::string* out) {
  AppendHeader(name, "counter", help, out);
  AppendSample(name, std::string(), static_cast<int64_t>(value), out);
}

// The sampler's counters and the memory of its tables and unwinder caches.
void AppendSamplerMetrics(std::string* out) {
  SamplerStats stats = GetSamplerStats();
  AppendGauge("memward_sampler_interval_bytes",
              "Mean bytes allocated between two sampled allocations; 0 when sampling is off.",
              stats.interval_bytes, out);
  AppendCounter("memward_sampler_samples_total", "Allocations sampled, freed ones included.",
                stats.samples_taken, out);
  AppendCounter("memward_sampler_dropped_samples_total",
                "Samples not recorded because the sample tables were full.",
                stats.samples_dropped, out);
  AppendGauge("memward_sampler_live_samples", "Sampled allocations not yet freed.",
              static_cast<int64_t>(stats.live_samples), out);
  AppendGauge("memward_sampler_table_resident_bytes",
              "Resident bytes of the sample tables in memward's arena.",
              static_cast<int64_t>(stats.table_resident_bytes), out);
  AppendGauge("memward_sampler_unwinder_cache_bytes",
              "Bytes the unwinders have mapped for their caches.",
              static_cast<int64_t>(stats.unwinder_cache_bytes), out);
  AppendCounter("memward_sampler_truncated_stacks_total",
                "Sampled stacks cut at a frame the cached unwinder cannot walk, taken before "
                "libunwind was loaded.",
                stats.truncated_stacks, out);
}

std::string TenantLabel(std::string_view tenant) {
  std::string label = "tenant=\"";
  AppendLabelValue(tenant, &label);
  label += '"';
  return label;
}

// The tenants that get their own label, with the rest summed into "other".
std::vector<memward_tenant_stats> LabelledTenants(const std::vector<memward_tenant_stats>& all) {
  std::vector<memward_tenant_stats> kept;
  std::vector<memward_tenant_stats> users;
  for (const memward_tenant_stats& tenant : all) {
    (tenant.id < kFirstUserTenant ? kept : users).push_back(tenant);
  }
  std::stable_sort(users.begin(), users.end(),
                   [](const auto& a, const auto& b) { return a.live_bytes > b.live_bytes; });
  const size_t cap = static_cast<size_t>(
      alloc::CurrentSettings().Get(base::SettingId::kMetricsMaxTenants));
  memward_tenant_stats other = {};
  strcpy(other.name, kOtherTenant);
  for (size_t i = 0; i < users.size(); i++) {
    if (i < cap) {
      kept.push_back(users[i]);
      continue;
    }
    const memward_tenant_stats& tenant = users[i];
    other.live_bytes += tenant.live_bytes;
    other.allocated_bytes += tenant.allocated_bytes;
    other.freed_bytes += tenant.freed_bytes;
    other.allocations += tenant.allocations;
    other.frees += tenant.frees;
    other.admitted += tenant.admitted;
    other.shed += tenant.shed;
    other.rejected += tenant.rejected;
    other.refused_allocations += tenant.refused_allocations;
    other.id = 1;  // marks "other" as present
  }
  if (other.id != 0) {
    other.id = kMaxTenants;  // not a real id: peaks and limits are not summed
    kept.push_back(other);
  }
  return kept;
}

using Field = int64_t (*)(const memward_tenant_stats&);

struct TenantMetric {
  const char* name;
  const char* type;
  const char* help;
  Field field;
  bool summable;  // false: not written for tenant="other"
  // false: not written for tenant="process", whose untagged allocations are
  // not counted one by one
  bool counted_for_process = true;
};

const TenantMetric kTenantMetrics[] = {
    {"memward_tenant_live_bytes", "gauge", "Bytes the tenant holds now (usable sizes).",
     [](const memward_tenant_stats& s) { return s.live_bytes; }, true},
    {"memward_tenant_peak_bytes", "gauge", "Most bytes the tenant held at once.",
     [](const memward_tenant_stats& s) { return s.peak_bytes; }, false, false},
    {"memward_tenant_allocated_bytes_total", "counter", "Bytes allocated by the tenant.",
     [](const memward_tenant_stats& s) { return static_cast<int64_t>(s.allocated_bytes); },
     true, false},
    {"memward_tenant_freed_bytes_total", "counter", "Bytes of the tenant's memory freed.",
     [](const memward_tenant_stats& s) { return static_cast<int64_t>(s.freed_bytes); }, true,
     false},
    {"memward_tenant_allocations_total", "counter", "Allocations charged to the tenant.",
     [](const memward_tenant_stats& s) { return static_cast<int64_t>(s.allocations); }, true,
     false},
    {"memward_tenant_frees_total", "counter", "Frees of the tenant's memory.",
     [](const memward_tenant_stats& s) { return static_cast<int64_t>(s.frees); }, true,
     false},
    {"memward_tenant_refused_allocations_total", "counter",
     "Allocations that failed because they would pass the hard limit.",
     [](const memward_tenant_stats& s) { return static_cast<int64_t>(s.refused_allocations); },
     true},
    {"memward_tenant_soft_limit_bytes", "gauge", "The tenant's soft limit; 0 for none.",
     [](const memward_tenant_stats& s) { return static_cast<int64_t>(s.soft_limit); }, false},
    {"memward_tenant_hard_limit_bytes", "gauge", "The tenant's hard limit; 0 for none.",
     [](const memward_tenant_stats& s) { return static_cast<int64_t>(s.hard_limit); }, false},
};

void AppendTenantMetrics(const std::vector<memward_tenant_stats>& tenants, std::string* out) {
  for (const TenantMetric& metric : kTenantMetrics) {
    AppendHeader(metric.name, metric.type, metric.help, out);
    for (const memward_tenant_stats& tenant : tenants) {
      if (tenant.id == kMaxTenants && !metric.summable) continue;
      if (tenant.id == kProcessTenant && !metric.counted_for_process) continue;
      AppendSample(metric.name, TenantLabel(tenant.name), metric.field(tenant), out);
    }
  }
  const char* name = "memward_tenant_admissions_total";
  AppendHeader(name, "counter", "Admission decisions for the tenant's requests.", out);
  for (const memward_tenant_stats& tenant : tenants) {
    const std::string label = TenantLabel(tenant.name);
    AppendSample(name, label + ",decision=\"admit\"", static_cast<int64_t>(tenant.admitted),
                 out);
    AppendSample(name, label + ",decision=\"shed\"", static_cast<int64_t>(tenant.shed), out);
    AppendSample(name, label + ",decision=\"reject\"", static_cast<int64_t>(tenant.rejected),
                 out);
  }
}

int PressureValue() {
  static const char* const kLevels[] = {"normal", "soft", "high", "critical"};
  const char* name = CurrentPressureName();
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, kLevels[i]) == 0) return i;
  }
  return -1;
}

void HandleMetrics(const AdminRequest& request, AdminResponse* response) {
  response->content_type = "text/plain; version=0.0.4; charset=utf-8";
  WriteMetricsText(&response->body);
}

}  // namespace

void WriteMetricsText(std::string* out) {
  // One refresh of jemalloc's statistics serves the whole text: reading the
  // tenants refreshes them (for the process tenant's bytes).
  std::vector<memward_tenant_stats> all = ReadAllTenantStats();
  alloc::HeapStatistics heap = alloc::ReadHeapStatisticsAsOfLastEpoch();
  auto bytes = [](size_t value) { return static_cast<int64_t>(value); };
  AppendGauge("memward_heap_allocated_bytes",
              "Bytes in live allocations (usable sizes), from jemalloc's stats.allocated.",
              bytes(heap.allocated), out);
  AppendGauge("memward_heap_active_bytes", "Bytes in pages with live allocations.",
              bytes(heap.active), out);
  AppendGauge("memward_heap_resident_bytes",
              "Bytes in resident pages that the allocator maps, metadata included.",
              bytes(heap.resident), out);
  AppendGauge("memward_heap_mapped_bytes", "Bytes in active extents mapped by the allocator.",
              bytes(heap.mapped), out);
  AppendGauge("memward_heap_retained_bytes", "Virtual memory kept for reuse, not backed.",
              bytes(heap.retained), out);
  AppendGauge("memward_heap_metadata_bytes", "Bytes of the allocator's own bookkeeping.",
              bytes(heap.metadata), out);
  AppendGauge("memward_heap_dirty_bytes", "Unused pages not yet returned to the kernel.",
              bytes(heap.dirty), out);

  memward_overhead overhead = ReadOverheadAtMostOncePerSecond();
  AppendGauge("memward_overhead_bytes", "Memory memward itself adds: tables, thread blocks "
              "and explicit thread caches.", static_cast<int64_t>(overhead.total_bytes), out);
  AppendGauge("memward_owned_range_open",
              "1 when memward's arenas had to map chunks outside their reserved range, so "
              "every free reads the owner map; 0 when free tells untagged blocks by one compare.",
              alloc::OwnedRangeIsOpenToAll() ? 1 : 0, out);

  AppendSamplerMetrics(out);

  AppendGauge("memward_requests_open", "Requests open now with an arena of their own.",
              alloc::CountRequestArenas().open, out);
  AppendHeader("memward_requests_ended_total", "counter", "Requests ended.", out);
  AppendSample("memward_requests_ended_total", std::string(),
               static_cast<int64_t>(EndedRequestCount()), out);
  AppendGauge("memward_pressure_level", "Memory pressure: 0 normal, 1 soft, 2 high, "
              "3 critical, -1 while the pressure ladder is off.", PressureValue(), out);

  AppendGauge("memward_tenants", "Registered tenants, the process and memward included.",
              static_cast<int64_t>(all.size()), out);
  AppendTenantMetrics(LabelledTenants(all), out);
}

void RegisterMetricsEndpoint() {
  RegisterAdminEndpoint("GET", "/metrics", "Prometheus text format", HandleMetrics);
}

}  // namespace memward::accounting

extern "C" MEMWARD_EXPORT int memward_metrics_text(char* buffer, size_t capacity,
                                                   size_t* length) {
  if (length == nullptr || (buffer == nullptr && capacity != 0)) return MEMWARD_ERROR_INVALID;
  std::string text;
  {
    // The text's buffer is memward's memory, not the calling tenant's.
    memward::accounting::MemwardAllocationScope scope;
    memward::accounting::WriteMetricsText(&text);
    *length = text.size();
    if (text.size() + 1 > capacity) return MEMWARD_ERROR_FULL;
    memcpy(buffer, text.c_str(), text.size() + 1);
    text.clear();
    text.shrink_to_fit();
  }
  return MEMWARD_OK;
}
