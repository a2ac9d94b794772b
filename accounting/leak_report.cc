#include "accounting/leak_report.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include "accounting/profile_json.h"
#include "base/json_writer.h"

namespace memward::accounting {
namespace {

using base::JsonWriter;

struct Breakdown {
  double bytes = 0;
  uint64_t samples = 0;
};

void WriteStack(const std::vector<uintptr_t>& frames, Symbolizer* symbolizer,
                JsonWriter* json) {
  WriteStackJson(frames.data(), static_cast<uint32_t>(frames.size()), symbolizer, json);
}

// Returns the value at quantile `q` of sorted `values` (nearest rank).
double Quantile(const std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  size_t index = static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

void WriteAges(const std::vector<size_t>& samples, const HeapSnapshot& snapshot,
               JsonWriter* json) {
  std::vector<double> ages;
  for (size_t index : samples) {
    const SampleRecord& record = snapshot.live[index];
    ages.push_back(static_cast<double>(snapshot.monotonic_ns - record.time_ns) / 1e9);
  }
  std::sort(ages.begin(), ages.end());
  json->Key("age_seconds").BeginObject();
  json->Key("min").Double(Quantile(ages, 0));
  json->Key("p50").Double(Quantile(ages, 0.5));
  json->Key("p90").Double(Quantile(ages, 0.9));
  json->Key("max").Double(Quantile(ages, 1));
  json->EndObject();
}

void WriteTenants(const std::vector<size_t>& samples, const HeapSnapshot& snapshot,
                  JsonWriter* json) {
  std::map<uint32_t, Breakdown> tenants;
  for (size_t index : samples) {
    const SampleRecord& record = snapshot.live[index];
    tenants[record.tenant].bytes += record.weight_bytes;
    tenants[record.tenant].samples++;
  }
  std::vector<std::pair<uint32_t, Breakdown>> sorted(tenants.begin(), tenants.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.bytes > b.second.bytes; });
  json->Key("tenants").BeginArray();
  for (const auto& [tenant, totals] : sorted) {
    json->BeginObject();
    json->Key("id").Uint(tenant);
    json->Key("name").String(snapshot.TenantName(tenant));
    json->Key("bytes").Double(totals.bytes);
    json->Key("samples").Uint(totals.samples);
    json->EndObject();
  }
  json->EndArray();
}

void WriteRequests(const std::vector<size_t>& samples, const HeapSnapshot& snapshot,
                   size_t max_requests, JsonWriter* json) {
  // Key: slot, generation, tenant, escaped.
  using RequestKey = std::tuple<uint32_t, uint32_t, uint32_t, bool>;
  std::map<RequestKey, Breakdown> requests;
  Breakdown escaped;
  for (size_t index : samples) {
    const SampleRecord& record = snapshot.live[index];
    if (record.escaped) {
      escaped.bytes += record.weight_bytes;
      escaped.samples++;
    }
    if (record.request_slot == 0) continue;
    RequestKey key{record.request_slot, record.request_generation, record.tenant,
                   record.escaped};
    requests[key].bytes += record.weight_bytes;
    requests[key].samples++;
  }
  std::vector<std::pair<RequestKey, Breakdown>> sorted(requests.begin(), requests.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.bytes > b.second.bytes; });
  json->Key("escaped_bytes").Double(escaped.bytes);
  json->Key("escaped_samples").Uint(escaped.samples);
  json->Key("requests_total").Uint(sorted.size());
  json->Key("requests").BeginArray();
  for (size_t i = 0; i < sorted.size() && i < max_requests; i++) {
    const auto& [key, totals] = sorted[i];
    json->BeginObject();
    json->Key("request").String(FormatRequest(std::get<0>(key), std::get<1>(key)));
    json->Key("tenant").String(snapshot.TenantName(std::get<2>(key)));
    json->Key("escaped").Bool(std::get<3>(key));
    json->Key("bytes").Double(totals.bytes);
    json->Key("samples").Uint(totals.samples);
    json->EndObject();
  }
  json->EndArray();
}

void WriteSuspect(const LeakSuspect& suspect, size_t rank, const HeapSnapshot& snapshot,
                  Symbolizer* symbolizer, const LeakReportOptions& options, JsonWriter* json) {
  double objects = 0;
  for (size_t index : suspect.samples) objects += snapshot.live[index].weight_objects;
  json->BeginObject();
  json->Key("rank").Uint(rank);
  json->Key("function").String(suspect.site.empty()
                                   ? std::string()
                                   : symbolizer->Lookup(suspect.site.front())
                                         .DisplayName(symbolizer->mappings()));
  json->Key("growth_bytes_per_second").Double(suspect.growth_bytes_per_second);
  json->Key("live_bytes").Double(suspect.live_bytes);
  json->Key("live_objects").Double(objects);
  json->Key("live_samples").Uint(suspect.samples.size());
  json->Key("windows_grown").Int(suspect.windows_grown);
  json->Key("windows_judged").Int(suspect.windows_judged);
  json->Key("history_bytes").BeginArray();
  for (double bytes : suspect.history) json->Double(bytes);
  json->EndArray();
  json->Key("site_frames").Uint(suspect.site.size());
  json->Key("stack");
  WriteStack(suspect.stack, symbolizer, json);
  WriteAges(suspect.samples, snapshot, json);
  WriteTenants(suspect.samples, snapshot, json);
  WriteRequests(suspect.samples, snapshot, options.max_requests, json);
  json->EndObject();
}

void WriteEscapedSites(const HeapSnapshot& snapshot, Symbolizer* symbolizer,
                       uintptr_t trim_address, size_t max_sites, JsonWriter* json) {
  std::map<uint32_t, std::pair<Breakdown, const SampleRecord*>> sites;
  for (const SampleRecord& record : snapshot.live) {
    if (!record.escaped) continue;
    auto& entry = sites[record.site];
    entry.first.bytes += record.weight_bytes;
    entry.first.samples++;
    entry.second = &record;
  }
  std::vector<std::pair<Breakdown, const SampleRecord*>> sorted;
  for (const auto& [site, entry] : sites) sorted.push_back(entry);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first.bytes > b.first.bytes; });
  json->Key("escaped_sites").BeginArray();
  for (size_t i = 0; i < sorted.size() && i < max_sites; i++) {
    const SampleRecord& record = *sorted[i].second;
    json->BeginObject();
    json->Key("bytes").Double(sorted[i].first.bytes);
    json->Key("samples").Uint(sorted[i].first.samples);
    uint32_t first = CountTrimmedFrames(record.frames, record.depth, trim_address, *symbolizer);
    json->Key("stack");
    WriteStack(std::vector<uintptr_t>(record.frames + first, record.frames + record.depth),
               symbolizer, json);
    json->EndObject();
  }
  json->EndArray();
}

}  // namespace

std::string LeakReportJson(const LeakDetector& detector, Symbolizer* symbolizer,
                           const LeakReportOptions& options) {
  const HeapSnapshot& snapshot = detector.last_snapshot();
  std::string out;
  JsonWriter json(&out);
  json.BeginObject();
  json.Key("window_ms").Int(options.window_ms);
  json.Key("windows_closed").Int(detector.windows_closed());
  json.Key("windows_judged").Int(detector.options().windows);
  json.Key("growth_fraction").Double(LeakDetector::kGrowthFraction);
  json.Key("sites_tracked").Uint(detector.sites_tracked());
  // The snapshot is that of the last closed window. Before the first one
  // closes it is empty, and zeros would read as sampling being off.
  if (detector.windows_closed() == 0) {
    json.Key("live_samples").Null();
    json.Key("interval_bytes").Null();
  } else {
    json.Key("live_samples").Uint(snapshot.live.size());
    json.Key("interval_bytes").Int(snapshot.interval_bytes);
  }
  json.Key("symbolizer").String(symbolizer->backend());
  json.Key("suspects").BeginArray();
  size_t rank = 1;
  for (const LeakSuspect& suspect : detector.suspects()) {
    WriteSuspect(suspect, rank++, snapshot, symbolizer, options, &json);
  }
  json.EndArray();
  WriteEscapedSites(snapshot, symbolizer, detector.options().trim_address,
                    options.max_escaped_sites, &json);
  json.EndObject();
  out.push_back('\n');
  return out;
}

}  // namespace memward::accounting
