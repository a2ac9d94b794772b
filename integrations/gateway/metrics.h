// The gateway's own counters, rendered as Prometheus text at GET /metrics.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace memward::gateway {

class ResponseCache;
class UpstreamRegistry;

// Relaxed atomics: each counter is read on its own, never as a consistent
// snapshot of several.
struct Metrics {
  // Responses by status class: index 1 for 1xx up to 5 for 5xx; 0 counts
  // requests that ended before a status was sent (client gone).
  std::array<std::atomic<std::uint64_t>, 6> responses_by_class{};
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> streamed_requests{0};
  std::atomic<std::uint64_t> request_body_bytes{0};
  std::atomic<std::uint64_t> response_body_bytes{0};
  std::atomic<std::uint64_t> rejected_over_budget{0};   // 429 from admission
  std::atomic<std::uint64_t> rejected_pressure{0};      // 503 from admission
  std::atomic<std::uint64_t> client_disconnects{0};     // upstream requests cancelled
  std::atomic<std::uint64_t> upstream_errors{0};        // connect, read or protocol failures
  std::atomic<std::uint64_t> upstream_timeouts{0};
  std::atomic<std::uint64_t> idle_purges{0};
  std::atomic<std::uint64_t> cache_purges{0};  // purges after dropping unused cache entries
  std::atomic<std::int64_t> open_requests{0};
  std::atomic<std::int64_t> open_connections{0};
  // memward request summaries, split by whether the request stored a cache
  // entry. Entries are built outside the request, so both stay 0 unless
  // something leaks.
  std::atomic<std::uint64_t> measured_requests{0};
  std::atomic<std::uint64_t> escaped_bytes_cache_fill{0};
  std::atomic<std::uint64_t> escaped_bytes_other{0};
  std::atomic<std::uint64_t> requests_with_escapes_other{0};
  std::atomic<std::uint64_t> request_peak_bytes_total{0};

  void CountResponse(int status);
};

// Renders the gateway's metrics and, when memward is loaded and provides
// them, memward's own after them.
std::string RenderMetrics(const Metrics& metrics, const ResponseCache& cache,
                          const UpstreamRegistry& upstreams);

}  // namespace memward::gateway
