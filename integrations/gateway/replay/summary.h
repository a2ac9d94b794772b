// The replay's results: the per-request CSV, the RSS CSV, and the summary
// printed as text and written as JSON for the benchmark scripts.
#pragma once

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "client.h"
#include "rss_sampler.h"

namespace memward::gateway::replay {

struct Percentiles {
  std::size_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

// Nearest-rank percentiles of `values`; all zero when it is empty.
Percentiles ComputePercentiles(std::vector<double> values);

struct ReplaySummary {
  std::string trace_name;
  double trace_start_s = 0;
  double trace_duration_s = 0;
  double time_compression = 1;
  std::size_t planned = 0;
  // Seconds from the first send to the end of the last response.
  double wall_s = 0;
  std::map<int, std::size_t> by_status;  // 0: no response
  std::size_t transport_errors = 0;
  // Responses with status 200 that did not end properly (a stream without [DONE]).
  std::size_t incomplete = 0;
  std::size_t streamed = 0;
  std::size_t repeats = 0;
  // Responses with status 200 per second of wall time, and their
  // completion tokens (max_tokens) per second.
  double ok_per_s = 0;
  double tokens_per_s = 0;
  Percentiles latency_ms;      // status 200, to the end of the response
  Percentiles first_byte_ms;   // streamed with status 200, to the first SSE event
  Percentiles send_lag_ms;     // how late the replayer sent, against the plan
  // Resident memory of the sampled process; zero when no pid was given.
  std::size_t rss_samples = 0;
  double rss_mean_bytes = 0, rss_p99_bytes = 0, rss_peak_bytes = 0;
  // Requests per tenant rank, with their statuses.
  std::vector<std::map<int, std::size_t>> tenant_status;
};

ReplaySummary Summarize(const std::vector<RequestRecord>& records,
                        const std::vector<PlannedRequest>& plan,
                        const std::vector<RssSample>& rss);

// The human-readable summary, ending with the traces' attribution.
void PrintSummary(const ReplaySummary& summary, const std::vector<std::string>& tenant_names,
                  std::ostream& out);

std::string SummaryJson(const ReplaySummary& summary, const std::vector<std::string>& tenant_names);

void WriteRecordsCsv(const std::vector<RequestRecord>& records, std::ostream& out);
void WriteRssCsv(const std::vector<RssSample>& samples, std::ostream& out);

}  // namespace memward::gateway::replay
