#include "metrics.h"

#include <memward/memward.h>

#include <cstdio>
#include <string_view>
#include <vector>

#include "response_cache.h"
#include "upstream.h"

namespace memward::gateway {
namespace {

void AppendMetric(std::string& out, std::string_view name, std::string_view type,
                  std::string_view help, double value) {
  char line[64];
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  std::snprintf(line, sizeof line, " %.17g\n", value);
  out.append(name).append(line);
}

// Appends memward's metrics when this memward provides them.
void AppendMemwardMetrics(std::string& out) {
  std::vector<char> buffer(64 << 10);
  std::size_t length = 0;
  int status = memward_metrics_text(buffer.data(), buffer.size(), &length);
  if (status == MEMWARD_ERROR_FULL) {
    buffer.resize(length + 1);
    status = memward_metrics_text(buffer.data(), buffer.size(), &length);
  }
  if (status == MEMWARD_OK) out.append(buffer.data(), length);
}

}  // namespace

void Metrics::CountResponse(int status) {
  std::size_t index = status >= 100 && status < 600 ? std::size_t(status / 100) : 0;
  responses_by_class[index].fetch_add(1, std::memory_order_relaxed);
}

std::string RenderMetrics(const Metrics& metrics, const ResponseCache& cache,
                          const UpstreamRegistry& upstreams) {
  auto get = [](const auto& counter) { return double(counter.load(std::memory_order_relaxed)); };
  std::string out;
  out.reserve(8 << 10);

  out.append(
      "# HELP memward_gateway_responses_total Responses by status class; \"none\" counts requests "
      "whose client left before a response.\n"
      "# TYPE memward_gateway_responses_total counter\n");
  const char* classes[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (std::size_t i = 0; i < metrics.responses_by_class.size(); ++i) {
    char line[96];
    std::snprintf(line, sizeof line, "memward_gateway_responses_total{class=\"%s\"} %llu\n",
                  classes[i],
                  static_cast<unsigned long long>(metrics.responses_by_class[i].load()));
    out.append(line);
  }
  AppendMetric(out, "memward_gateway_requests_total", "counter", "Requests read.",
               get(metrics.requests));
  AppendMetric(out, "memward_gateway_streamed_requests_total", "counter",
               "Completion requests with \"stream\": true.", get(metrics.streamed_requests));
  AppendMetric(out, "memward_gateway_request_body_bytes_total", "counter",
               "Bytes of completion request bodies.", get(metrics.request_body_bytes));
  AppendMetric(out, "memward_gateway_response_body_bytes_total", "counter",
               "Bytes of completion responses sent.", get(metrics.response_body_bytes));
  AppendMetric(out, "memward_gateway_rejected_over_budget_total", "counter",
               "Requests rejected with 429 by memward admission.", get(metrics.rejected_over_budget));
  AppendMetric(out, "memward_gateway_rejected_pressure_total", "counter",
               "Requests rejected with 503 under memory pressure.", get(metrics.rejected_pressure));
  AppendMetric(out, "memward_gateway_client_disconnects_total", "counter",
               "Requests whose client left early; their upstream requests were cancelled.",
               get(metrics.client_disconnects));
  AppendMetric(out, "memward_gateway_upstream_errors_total", "counter",
               "Upstream connect, protocol and read failures.", get(metrics.upstream_errors));
  AppendMetric(out, "memward_gateway_upstream_timeouts_total", "counter",
               "Upstream requests that timed out.", get(metrics.upstream_timeouts));
  AppendMetric(out, "memward_gateway_idle_purges_total", "counter",
               "Times free memory was returned to the operating system after an idle period.",
               get(metrics.idle_purges));
  AppendMetric(out, "memward_gateway_cache_purges_total", "counter",
               "Purges after unused cache entries were dropped.", get(metrics.cache_purges));
  AppendMetric(out, "memward_gateway_open_requests", "gauge", "Completion requests in flight.",
               get(metrics.open_requests));
  AppendMetric(out, "memward_gateway_open_connections", "gauge", "Open client connections.",
               get(metrics.open_connections));
  AppendMetric(out, "memward_gateway_measured_requests_total", "counter",
               "Requests that ran in a memward request with its own arena.",
               get(metrics.measured_requests));
  AppendMetric(out, "memward_gateway_request_peak_bytes_total", "counter",
               "Sum of the measured requests' peak bytes.", get(metrics.request_peak_bytes_total));
  AppendMetric(out, "memward_gateway_escaped_bytes_cache_fill_total", "counter",
               "Bytes still live at the end of requests that stored a cache entry (0 unless a leak).",
               get(metrics.escaped_bytes_cache_fill));
  AppendMetric(out, "memward_gateway_escaped_bytes_other_total", "counter",
               "Bytes still live at the end of requests that stored nothing (0 unless a leak).",
               get(metrics.escaped_bytes_other));
  AppendMetric(out, "memward_gateway_requests_with_escapes_other_total", "counter",
               "Requests that stored nothing yet left bytes live.",
               get(metrics.requests_with_escapes_other));

  CacheStats stats = cache.stats();
  AppendMetric(out, "memward_gateway_cache_hits_total", "counter", "Cache hits.", stats.hits);
  AppendMetric(out, "memward_gateway_cache_misses_total", "counter", "Cache misses.",
               stats.misses);
  AppendMetric(out, "memward_gateway_cache_inserts_total", "counter", "Entries stored.",
               stats.inserts);
  AppendMetric(out, "memward_gateway_cache_evictions_total", "counter",
               "Entries evicted to stay under max_bytes.", stats.evictions);
  AppendMetric(out, "memward_gateway_cache_expirations_total", "counter",
               "Entries dropped after their TTL.", stats.expirations);
  AppendMetric(out, "memward_gateway_cache_reclaimed_bytes_total", "counter",
               "Bytes freed at memward's request.", stats.reclaimed_bytes);
  AppendMetric(out, "memward_gateway_cache_unused_reclaimed_bytes_total", "counter",
               "Bytes of entries dropped as unused for hooks.cache_unused_after_ms, or expired.",
               stats.unused_reclaimed_bytes);
  AppendMetric(out, "memward_gateway_cache_bytes", "gauge", "Bytes held by the cache.",
               stats.bytes);
  AppendMetric(out, "memward_gateway_cache_entries", "gauge", "Entries in the cache.",
               stats.entries);

  out.append(
      "# HELP memward_gateway_upstream_healthy Whether an upstream endpoint is healthy.\n"
      "# TYPE memward_gateway_upstream_healthy gauge\n");
  for (const auto& endpoint : upstreams.endpoints()) {
    out.append("memward_gateway_upstream_healthy{endpoint=\"")
        .append(endpoint->config().label)
        .append(endpoint->healthy() ? "\"} 1\n" : "\"} 0\n");
  }
  AppendMemwardMetrics(out);
  return out;
}

}  // namespace memward::gateway
