#include "summary.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <numeric>

#include <boost/json.hpp>

namespace memward::gateway::replay {
namespace {

namespace json = boost::json;

constexpr double kMiB = 1024.0 * 1024.0;

double NearestRank(const std::vector<double>& sorted, double percentile) {
  std::size_t rank = static_cast<std::size_t>(std::ceil(percentile / 100.0 * sorted.size()));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

json::object PercentilesJson(const Percentiles& p) {
  return {{"count", p.count}, {"mean", p.mean}, {"p50", p.p50},
          {"p90", p.p90},     {"p99", p.p99},   {"max", p.max}};
}

void PrintPercentiles(const char* name, const Percentiles& p, std::ostream& out) {
  out << "  " << name << ": p50 " << p.p50 << ", p90 " << p.p90 << ", p99 " << p.p99 << ", max "
      << p.max << " (" << p.count << " requests)\n";
}

}  // namespace

Percentiles ComputePercentiles(std::vector<double> values) {
  Percentiles result;
  if (values.empty()) return result;
  std::sort(values.begin(), values.end());
  result.count = values.size();
  result.p50 = NearestRank(values, 50);
  result.p90 = NearestRank(values, 90);
  result.p99 = NearestRank(values, 99);
  result.max = values.back();
  result.mean = std::accumulate(values.begin(), values.end(), 0.0) / values.size();
  return result;
}

ReplaySummary Summarize(const std::vector<RequestRecord>& records,
                        const std::vector<PlannedRequest>& plan,
                        const std::vector<RssSample>& rss) {
  ReplaySummary summary;
  summary.planned = plan.size();
  std::vector<double> latency, first_byte, lag;
  double first_send = records.empty() ? 0 : records.front().sent_s;
  double last_end = first_send;
  double ok_tokens = 0;
  for (const RequestRecord& record : records) {
    ++summary.by_status[record.status];
    if (record.status == 0) ++summary.transport_errors;
    if (record.stream) ++summary.streamed;
    if (record.repeat) ++summary.repeats;
    if (summary.tenant_status.size() <= record.tenant) summary.tenant_status.resize(record.tenant + 1);
    ++summary.tenant_status[record.tenant][record.status];
    first_send = std::min(first_send, record.sent_s);
    last_end = std::max(last_end, record.sent_s + std::max(record.latency_ms, 0.0) / 1000);
    lag.push_back((record.sent_s - record.scheduled_s) * 1000);
    if (record.status != 200) continue;
    if (!record.complete) ++summary.incomplete;
    latency.push_back(record.latency_ms);
    if (record.stream && record.first_byte_ms >= 0) first_byte.push_back(record.first_byte_ms);
    ok_tokens += plan[record.index].max_tokens;
  }
  summary.wall_s = last_end - first_send;
  if (summary.wall_s > 0) {
    summary.ok_per_s = latency.size() / summary.wall_s;
    summary.tokens_per_s = ok_tokens / summary.wall_s;
  }
  summary.latency_ms = ComputePercentiles(std::move(latency));
  summary.first_byte_ms = ComputePercentiles(std::move(first_byte));
  summary.send_lag_ms = ComputePercentiles(std::move(lag));

  std::vector<double> rss_values;
  for (const RssSample& sample : rss) rss_values.push_back(static_cast<double>(sample.rss_bytes));
  Percentiles rss_percentiles = ComputePercentiles(std::move(rss_values));
  summary.rss_samples = rss_percentiles.count;
  summary.rss_mean_bytes = rss_percentiles.mean;
  summary.rss_p99_bytes = rss_percentiles.p99;
  summary.rss_peak_bytes = rss_percentiles.max;
  return summary;
}

void PrintSummary(const ReplaySummary& summary, const std::vector<std::string>& tenant_names,
                  std::ostream& out) {
  out << std::fixed << std::setprecision(1);
  out << "replayed " << summary.planned << " requests of " << summary.trace_name << " (trace seconds "
      << summary.trace_start_s << " to " << summary.trace_start_s + summary.trace_duration_s
      << ", time compression " << summary.time_compression << "x) in " << summary.wall_s << " s\n";
  out << "  streamed " << summary.streamed << ", repeated prompts " << summary.repeats << "\n";
  out << "requests by status:";
  for (const auto& [status, count] : summary.by_status) {
    out << ' ' << (status == 0 ? std::string("no-response") : std::to_string(status)) << '='
        << count;
  }
  out << "\n  incomplete 200 streams: " << summary.incomplete << "\n";
  out << "throughput: " << summary.ok_per_s << " ok responses/s, " << summary.tokens_per_s
      << " completion tokens/s\n";
  out << "latency in ms (status 200):\n";
  PrintPercentiles("whole response", summary.latency_ms, out);
  PrintPercentiles("first SSE event of streams", summary.first_byte_ms, out);
  PrintPercentiles("send lag against the plan", summary.send_lag_ms, out);
  if (summary.rss_samples > 0) {
    out << "resident memory (VmRSS, " << summary.rss_samples << " samples): mean "
        << summary.rss_mean_bytes / kMiB << " MiB, p99 " << summary.rss_p99_bytes / kMiB
        << " MiB, peak " << summary.rss_peak_bytes / kMiB << " MiB\n";
  }
  out << "requests by tenant (Zipf rank order):\n";
  for (std::size_t rank = 0; rank < summary.tenant_status.size() && rank < 8; ++rank) {
    std::size_t total = 0;
    for (const auto& [status, count] : summary.tenant_status[rank]) total += count;
    out << "  " << (rank < tenant_names.size() ? tenant_names[rank] : std::to_string(rank)) << ": "
        << total << " (";
    bool first = true;
    for (const auto& [status, count] : summary.tenant_status[rank]) {
      out << (first ? "" : ", ") << status << '=' << count;
      first = false;
    }
    out << ")\n";
  }
  out << kTraceAttribution << "\n";
}

std::string SummaryJson(const ReplaySummary& summary, const std::vector<std::string>& tenant_names) {
  json::object by_status;
  for (const auto& [status, count] : summary.by_status) by_status[std::to_string(status)] = count;
  json::array tenants;
  for (std::size_t rank = 0; rank < summary.tenant_status.size(); ++rank) {
    json::object statuses;
    for (const auto& [status, count] : summary.tenant_status[rank]) {
      statuses[std::to_string(status)] = count;
    }
    tenants.push_back(json::object{
        {"tenant", rank < tenant_names.size() ? tenant_names[rank] : std::to_string(rank)},
        {"by_status", std::move(statuses)}});
  }
  json::object root{
      {"trace", summary.trace_name},
      {"trace_start_s", summary.trace_start_s},
      {"trace_duration_s", summary.trace_duration_s},
      {"time_compression", summary.time_compression},
      {"planned", summary.planned},
      {"wall_s", summary.wall_s},
      {"by_status", std::move(by_status)},
      {"transport_errors", summary.transport_errors},
      {"incomplete", summary.incomplete},
      {"streamed", summary.streamed},
      {"repeats", summary.repeats},
      {"ok_per_s", summary.ok_per_s},
      {"tokens_per_s", summary.tokens_per_s},
      {"latency_ms", PercentilesJson(summary.latency_ms)},
      {"first_byte_ms", PercentilesJson(summary.first_byte_ms)},
      {"send_lag_ms", PercentilesJson(summary.send_lag_ms)},
      {"rss_samples", summary.rss_samples},
      {"rss_mean_bytes", summary.rss_mean_bytes},
      {"rss_p99_bytes", summary.rss_p99_bytes},
      {"rss_peak_bytes", summary.rss_peak_bytes},
      {"tenants", std::move(tenants)},
      {"attribution", kTraceAttribution},
  };
  return json::serialize(root);
}

void WriteRecordsCsv(const std::vector<RequestRecord>& records, std::ostream& out) {
  out << "index,tenant,stream,repeat,scheduled_s,sent_s,status,header_ms,first_byte_ms,latency_ms,"
         "response_bytes,complete,error\n";
  out << std::fixed << std::setprecision(3);
  for (const RequestRecord& r : records) {
    std::string error = r.error;
    // One CSV field: no quotes, commas or line breaks inside.
    std::replace_if(error.begin(), error.end(), [](char c) { return c == '"' || c == ',' || c == '\n' || c == '\r'; }, ' ');
    out << r.index << ',' << r.tenant << ',' << r.stream << ',' << r.repeat << ',' << r.scheduled_s
        << ',' << r.sent_s << ',' << r.status << ',' << r.header_ms << ',' << r.first_byte_ms << ','
        << r.latency_ms << ',' << r.response_bytes << ',' << r.complete << ',' << error << '\n';
  }
}

void WriteRssCsv(const std::vector<RssSample>& samples, std::ostream& out) {
  out << "time_s,rss_bytes\n";
  out << std::fixed << std::setprecision(3);
  for (const RssSample& sample : samples) out << sample.time_s << ',' << sample.rss_bytes << '\n';
}

}  // namespace memward::gateway::replay
