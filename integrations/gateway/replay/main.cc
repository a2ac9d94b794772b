// memward-trace-replay: replays an Azure LLM inference trace against an
// OpenAI-compatible gateway and samples the gateway's resident memory.
// See README.md in this folder.
#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <absl/flags/flag.h>
#include <absl/flags/parse.h>
#include <absl/flags/usage.h>
#include <absl/flags/usage_config.h>
#include <absl/strings/match.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "client.h"
#include "plan.h"
#include "rss_sampler.h"
#include "summary.h"
#include "trace.h"

ABSL_FLAG(std::string, gateway, "127.0.0.1:8080", "IPv4 address and port of the gateway, HOST:PORT");
ABSL_FLAG(std::string, path, "/v1/chat/completions", "request target of every request");
ABSL_FLAG(std::string, model, "mock-chat", "the model field of every request");
ABSL_FLAG(std::string, trace, "", "trace CSV file (TIMESTAMP,ContextTokens,GeneratedTokens)");
ABSL_FLAG(double, trace_start_s, 0, "offset into the trace, in trace seconds, where the slice starts");
ABSL_FLAG(double, trace_duration_s, 60, "length of the slice in trace seconds");
ABSL_FLAG(int64_t, max_requests, 0, "send at most this many rows of the slice; 0: all");
ABSL_FLAG(double, time_compression, 1,
          "divide the trace's arrival times by this factor (10 sends 10 trace seconds per second)");
ABSL_FLAG(std::string, gateway_config, "",
          "gateway config JSON: its tenants, in order, are the Zipf ranks, and each sends with its "
          "first API key");
ABSL_FLAG(std::string, api_keys, "",
          "comma-separated API keys, one per tenant in Zipf rank order (instead of --gateway_config)");
ABSL_FLAG(int, tenants, 1, "tenants without API keys, when neither --gateway_config nor --api_keys is set");
ABSL_FLAG(double, zipf_exponent, 1.1, "Zipf exponent s of the tenant draw (0: uniform)");
ABSL_FLAG(double, stream_share, 0.7, "share of streamed requests, 0 to 1");
ABSL_FLAG(double, repeat_share, 0.1,
          "share of requests that repeat an earlier request of the same tenant, 0 to 1");
ABSL_FLAG(int, max_prompt_tokens, 16384, "prompts longer than this many words are cut");
ABSL_FLAG(uint64_t, seed, 1, "seed of the tenant, stream and repeat draws");
ABSL_FLAG(int, request_timeout_s, 120, "time limit of each request, 1 to 3600 s");
ABSL_FLAG(int, max_in_flight, 4096,
          "requests open at once; a request due while this many are open is not sent and counts as "
          "status 0");
ABSL_FLAG(int, pid, 0, "process whose VmRSS is sampled (the gateway); 0: none");
ABSL_FLAG(std::string, pid_file, "", "file with the pid to sample, instead of --pid");
ABSL_FLAG(int, sample_ms, 100, "RSS sampling period in milliseconds, 10 to 10000");
ABSL_FLAG(double, settle_s, 0, "keep sampling RSS this many seconds after the last response");
ABSL_FLAG(std::string, records_csv, "", "write one CSV row per request here");
ABSL_FLAG(std::string, rss_csv, "", "write the RSS samples here as CSV");
ABSL_FLAG(std::string, summary_json, "", "write the summary here as JSON");

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace memward::gateway::replay;
using Clock = std::chrono::steady_clock;

[[noreturn]] void ExitWithUsageError(const std::string& message) {
  std::cerr << "memward-trace-replay: " << message << "\nRun with --help for the options.\n";
  std::exit(2);
}

[[noreturn]] void ExitWithError(const std::string& message) {
  std::cerr << "memward-trace-replay: error: " << message << '\n';
  std::exit(1);
}

void RequireRange(const char* flag, double value, double low, double high) {
  if (!(value >= low && value <= high)) {
    std::ostringstream message;
    message << "--" << flag << " must be from " << low << " to " << high << ", not " << value;
    ExitWithUsageError(message.str());
  }
}

asio::ip::tcp::endpoint ParseGateway(const std::string& text) {
  std::size_t colon = text.rfind(':');
  boost::system::error_code error;
  asio::ip::address address;
  if (colon != std::string::npos) address = asio::ip::make_address_v4(text.substr(0, colon), error);
  int port = 0;
  if (colon != std::string::npos && !error) {
    try {
      port = std::stoi(text.substr(colon + 1));
    } catch (const std::exception&) {
      port = 0;
    }
  }
  if (colon == std::string::npos || error || port < 1 || port > 65535) {
    ExitWithUsageError("--gateway must be IPV4:PORT with PORT from 1 to 65535, not '" + text + "'");
  }
  return {address, static_cast<unsigned short>(port)};
}

struct Tenants {
  std::vector<std::string> names;
  std::vector<std::string> keys;  // empty strings: no Authorization header
};

Tenants TenantsFromGatewayConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) ExitWithError("cannot open --gateway_config file " + path);
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code error;
  json::value config = json::parse(text.str(), error);
  const json::array* tenants = nullptr;
  if (!error && config.is_object()) {
    if (const json::value* field = config.as_object().if_contains("tenants")) tenants = field->if_array();
  }
  if (tenants == nullptr || tenants->empty()) {
    ExitWithError(path + ": expected a JSON object with a non-empty 'tenants' array");
  }
  Tenants result;
  for (std::size_t i = 0; i < tenants->size(); ++i) {
    const json::value& tenant = (*tenants)[i];
    const json::value* name = tenant.is_object() ? tenant.as_object().if_contains("name") : nullptr;
    const json::value* keys = tenant.is_object() ? tenant.as_object().if_contains("api_keys") : nullptr;
    if (name == nullptr || !name->is_string() || keys == nullptr || !keys->is_array() ||
        keys->as_array().empty() || !keys->as_array()[0].is_string()) {
      ExitWithError(path + ": tenants[" + std::to_string(i) +
                    "] needs a string 'name' and a non-empty 'api_keys' array of strings");
    }
    result.names.emplace_back(name->as_string());
    result.keys.emplace_back(keys->as_array()[0].as_string());
  }
  return result;
}

Tenants TenantsFromFlags() {
  if (std::string config = absl::GetFlag(FLAGS_gateway_config); !config.empty()) {
    return TenantsFromGatewayConfig(config);
  }
  Tenants result;
  if (std::string keys = absl::GetFlag(FLAGS_api_keys); !keys.empty()) {
    std::stringstream list(keys);
    for (std::string key; std::getline(list, key, ',');) {
      if (key.empty()) ExitWithUsageError("--api_keys has an empty key: '" + keys + "'");
      result.names.push_back("key" + std::to_string(result.keys.size() + 1));
      result.keys.push_back(key);
    }
    return result;
  }
  int count = absl::GetFlag(FLAGS_tenants);
  RequireRange("tenants", count, 1, 10000);
  for (int i = 0; i < count; ++i) {
    result.names.push_back("tenant" + std::to_string(i + 1));
    result.keys.emplace_back();
  }
  return result;
}

pid_t PidFromFlags() {
  if (std::string file = absl::GetFlag(FLAGS_pid_file); !file.empty()) {
    std::ifstream in(file);
    long pid = 0;
    if (!(in >> pid) || pid <= 0) ExitWithError("--pid_file " + file + " does not contain a pid");
    return static_cast<pid_t>(pid);
  }
  int pid = absl::GetFlag(FLAGS_pid);
  if (pid < 0) ExitWithUsageError("--pid must be a process id, or 0 for none");
  return pid;
}

bool IsPlainModelName(const std::string& model) {
  return !model.empty() && std::all_of(model.begin(), model.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == ':' || c == '/';
  });
}

// State shared by the scheduler and the request coroutines, all on one
// thread of the io_context.
struct Replay {
  Target target;
  std::vector<PlannedRequest> plan;
  Tenants tenants;
  std::vector<RequestRecord> records;
  std::size_t max_in_flight = 0;
  std::size_t in_flight = 0;
  Clock::time_point start;
};

asio::awaitable<void> RunOne(Replay& replay, std::size_t index) {
  const PlannedRequest& request = replay.plan[index];
  co_await SendRequest(replay.target, request, replay.tenants.keys[request.tenant], replay.start,
                       replay.records[index]);
  --replay.in_flight;
}

asio::awaitable<void> Schedule(Replay& replay) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (std::size_t i = 0; i < replay.plan.size(); ++i) {
    const PlannedRequest& request = replay.plan[i];
    RequestRecord& record = replay.records[i];
    record.index = i;
    record.tenant = request.tenant;
    record.stream = request.stream;
    record.repeat = request.repeat;
    record.scheduled_s = request.send_at_s;
    const Clock::time_point due = replay.start + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double>(request.send_at_s));
    timer.expires_at(due);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (replay.in_flight >= replay.max_in_flight) {
      record.sent_s = std::chrono::duration<double>(Clock::now() - replay.start).count();
      record.error = "not sent: --max_in_flight requests were open";
      continue;
    }
    ++replay.in_flight;
    asio::co_spawn(timer.get_executor(), RunOne(replay, i), asio::detached);
  }
}

void WriteFile(const std::string& path, const std::string& what,
               const std::function<void(std::ostream&)>& write) {
  if (path.empty()) return;
  std::ofstream out(path);
  write(out);
  if (!out.flush()) ExitWithError("cannot write the " + what + " to " + path);
}

}  // namespace

int main(int argc, char** argv) {
  // --help lists the flags of this file; abseil's default looks for a file
  // named after the program.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "replay/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "Replays an Azure LLM inference trace against an OpenAI-compatible gateway.\n"
      "Usage: memward-trace-replay --trace=FILE --gateway=HOST:PORT [options]");
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) ExitWithUsageError(std::string("unexpected argument '") + positional[1] + "'");

  const std::string trace_path = absl::GetFlag(FLAGS_trace);
  if (trace_path.empty()) ExitWithUsageError("--trace is required");
  const double trace_start = absl::GetFlag(FLAGS_trace_start_s);
  const double trace_duration = absl::GetFlag(FLAGS_trace_duration_s);
  const double compression = absl::GetFlag(FLAGS_time_compression);
  RequireRange("trace_start_s", trace_start, 0, 1e7);
  RequireRange("trace_duration_s", trace_duration, 0.001, 1e7);
  RequireRange("time_compression", compression, 0.001, 1e6);
  RequireRange("max_requests", absl::GetFlag(FLAGS_max_requests), 0, 1e8);
  RequireRange("zipf_exponent", absl::GetFlag(FLAGS_zipf_exponent), 0, 10);
  RequireRange("stream_share", absl::GetFlag(FLAGS_stream_share), 0, 1);
  RequireRange("repeat_share", absl::GetFlag(FLAGS_repeat_share), 0, 1);
  RequireRange("max_prompt_tokens", absl::GetFlag(FLAGS_max_prompt_tokens), 1, 1 << 20);
  RequireRange("request_timeout_s", absl::GetFlag(FLAGS_request_timeout_s), 1, 3600);
  RequireRange("max_in_flight", absl::GetFlag(FLAGS_max_in_flight), 1, 1 << 20);
  RequireRange("sample_ms", absl::GetFlag(FLAGS_sample_ms), 10, 10000);
  RequireRange("settle_s", absl::GetFlag(FLAGS_settle_s), 0, 3600);
  if (!IsPlainModelName(absl::GetFlag(FLAGS_model))) {
    ExitWithUsageError("--model must be letters, digits and - _ . : /, not '" +
                       absl::GetFlag(FLAGS_model) + "'");
  }
  if (absl::GetFlag(FLAGS_path).empty() || absl::GetFlag(FLAGS_path)[0] != '/') {
    ExitWithUsageError("--path must start with '/'");
  }

  Replay replay;
  replay.target.endpoint = ParseGateway(absl::GetFlag(FLAGS_gateway));
  replay.target.path = absl::GetFlag(FLAGS_path);
  replay.target.model = absl::GetFlag(FLAGS_model);
  replay.target.timeout = std::chrono::seconds(absl::GetFlag(FLAGS_request_timeout_s));
  replay.tenants = TenantsFromFlags();
  replay.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  const pid_t pid = PidFromFlags();

  std::string error;
  std::optional<TraceSlice> slice =
      LoadTrace(trace_path, trace_start, trace_duration,
                static_cast<std::size_t>(absl::GetFlag(FLAGS_max_requests)), error);
  if (!slice) ExitWithError(error);
  if (slice->rows.empty()) {
    ExitWithError("the slice from " + std::to_string(trace_start) + " s for " +
                  std::to_string(trace_duration) + " s of " + trace_path + " has no rows");
  }

  PlanOptions plan_options;
  plan_options.tenant_count = replay.tenants.keys.size();
  plan_options.zipf_exponent = absl::GetFlag(FLAGS_zipf_exponent);
  plan_options.stream_share = absl::GetFlag(FLAGS_stream_share);
  plan_options.repeat_share = absl::GetFlag(FLAGS_repeat_share);
  plan_options.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  plan_options.seed = absl::GetFlag(FLAGS_seed);
  replay.plan = MakePlan(slice->rows, compression, plan_options);
  replay.records.resize(replay.plan.size());

  std::cout << "memward-trace-replay: " << replay.plan.size() << " requests from " << trace_path
            << " to http://" << replay.target.endpoint << replay.target.path << " over "
            << replay.plan.back().send_at_s << " s, " << replay.tenants.keys.size() << " tenants"
            << (pid > 0 ? ", sampling VmRSS of pid " + std::to_string(pid) : std::string())
            << std::endl;

  std::optional<RssSampler> sampler;
  if (pid > 0) {
    if (ReadResidentBytes(pid) == 0) ExitWithError("cannot read VmRSS of pid " + std::to_string(pid));
    sampler.emplace(pid, std::chrono::milliseconds(absl::GetFlag(FLAGS_sample_ms)));
  }
  asio::io_context io(1);
  replay.start = Clock::now();
  asio::co_spawn(io, Schedule(replay), asio::detached);
  io.run();
  if (double settle = absl::GetFlag(FLAGS_settle_s); settle > 0 && sampler) {
    std::this_thread::sleep_for(std::chrono::duration<double>(settle));
  }
  std::vector<RssSample> rss = sampler ? sampler->Finish() : std::vector<RssSample>{};

  ReplaySummary summary = Summarize(replay.records, replay.plan, rss);
  summary.trace_name = std::filesystem::path(trace_path).filename().string();
  summary.trace_start_s = trace_start;
  summary.trace_duration_s = trace_duration;
  summary.time_compression = compression;
  PrintSummary(summary, replay.tenants.names, std::cout);

  WriteFile(absl::GetFlag(FLAGS_records_csv), "request records",
            [&](std::ostream& out) { WriteRecordsCsv(replay.records, out); });
  WriteFile(absl::GetFlag(FLAGS_rss_csv), "RSS samples",
            [&](std::ostream& out) { WriteRssCsv(rss, out); });
  WriteFile(absl::GetFlag(FLAGS_summary_json), "summary",
            [&](std::ostream& out) { out << SummaryJson(summary, replay.tenants.names) << '\n'; });
  return 0;
}
