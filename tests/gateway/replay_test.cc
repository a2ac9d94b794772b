// memward-trace-replay: the trace reader, the plan, and the program replaying
// a short slice of the conversation trace against memward-mock-upstream.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "harness/process.h"
#include "plan.h"
#include "summary.h"
#include "trace.h"

namespace memward::gateway_test {
namespace {

namespace json = boost::json;
using gateway::replay::ComputePercentiles;
using gateway::replay::LoadTrace;
using gateway::replay::MakePlan;
using gateway::replay::PlannedRequest;
using gateway::replay::PlanOptions;
using gateway::replay::TraceRow;
using integration::Process;
using integration::ProcessOptions;
using integration::RunResult;
using integration::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kHeader = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

TEST(TraceReader, SlicesAndRebases) {
  TempDir dir("memward-replay");
  integration::write_text_file(dir / "t.csv", std::string(kHeader) +
                                                   "2023-11-16 23:59:59.5000000,10,1\n"
                                                   "2023-11-17 00:00:00.0000000,20,2\n"
                                                   "2023-11-17 00:00:01.2500000,30,3\n"
                                                   "2023-11-17 00:00:03.0000000,40,4\n");
  std::string error;
  auto slice = LoadTrace((dir / "t.csv").string(), 0.4, 2.0, 0, error);
  ASSERT_TRUE(slice.has_value()) << error;
  EXPECT_EQ(slice->file_rows, 4u);
  ASSERT_EQ(slice->rows.size(), 2u);
  EXPECT_DOUBLE_EQ(slice->rows[0].arrival_s, 0);
  EXPECT_DOUBLE_EQ(slice->rows[1].arrival_s, 1.25);
  EXPECT_EQ(slice->rows[0].context_tokens, 20u);
  EXPECT_EQ(slice->rows[1].generated_tokens, 3u);

  auto limited = LoadTrace((dir / "t.csv").string(), 0, 100, 3, error);
  ASSERT_TRUE(limited.has_value()) << error;
  EXPECT_EQ(limited->rows.size(), 3u);
}

TEST(TraceReader, RejectsMalformedRows) {
  TempDir dir("memward-replay");
  integration::write_text_file(dir / "bad-row.csv", std::string(kHeader) +
                                                         "2023-11-16 18:15:46.6805900,374,44\n"
                                                         "2023-11-16 18:15:47,x,44\n");
  integration::write_text_file(dir / "bad-header.csv", "time,context,generated\n");
  std::string error;
  EXPECT_FALSE(LoadTrace((dir / "bad-row.csv").string(), 0, 100, 0, error).has_value());
  EXPECT_NE(error.find("bad-row.csv:3: invalid row"), std::string::npos) << error;
  EXPECT_FALSE(LoadTrace((dir / "bad-header.csv").string(), 0, 100, 0, error).has_value());
  EXPECT_NE(error.find(":1: expected the header"), std::string::npos) << error;
  EXPECT_FALSE(LoadTrace((dir / "missing.csv").string(), 0, 100, 0, error).has_value());
  EXPECT_NE(error.find("cannot open trace file"), std::string::npos) << error;
}

std::vector<TraceRow> SyntheticRows(std::size_t count) {
  std::vector<TraceRow> rows;
  for (std::size_t i = 0; i < count; ++i) {
    rows.push_back({static_cast<double>(i), static_cast<std::uint32_t>(100 + i % 7),
                    static_cast<std::uint32_t>(i % 5)});
  }
  return rows;
}

TEST(ReplayPlan, SameSeedSamePlan) {
  PlanOptions options;
  options.tenant_count = 8;
  auto first = MakePlan(SyntheticRows(500), 4, options);
  auto second = MakePlan(SyntheticRows(500), 4, options);
  ASSERT_EQ(first.size(), 500u);
  for (std::size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].tenant, second[i].tenant) << i;
    EXPECT_EQ(first[i].prompt_seed, second[i].prompt_seed) << i;
    EXPECT_EQ(first[i].stream, second[i].stream) << i;
  }
  EXPECT_DOUBLE_EQ(first[8].send_at_s, 2.0);  // row 8 arrives at 8 s, compressed 4x
  // Rows with 0 generated tokens still ask for one.
  EXPECT_EQ(first[0].max_tokens, 1u);
}

TEST(ReplayPlan, ZipfFavoursLowRanks) {
  PlanOptions options;
  options.tenant_count = 10;
  options.zipf_exponent = 1.2;
  auto plan = MakePlan(SyntheticRows(20000), 1, options);
  std::vector<std::size_t> counts(10);
  for (const PlannedRequest& request : plan) ++counts.at(request.tenant);
  // Expected shares: 1/k^1.2 normalised; rank 1 gets about 35%, rank 10
  // about 2%. Wide bounds: the draw is random.
  EXPECT_GT(counts[0], 6000u);
  EXPECT_LT(counts[0], 8000u);
  EXPECT_GT(counts[0], counts[1]);
  EXPECT_GT(counts[1], counts[4]);
  EXPECT_GT(counts[4], counts[9]);
  EXPECT_GT(counts[9], 100u);
}

TEST(ReplayPlan, RepeatsCopyEarlierRequests) {
  PlanOptions options;
  options.tenant_count = 3;
  options.repeat_share = 1;
  auto plan = MakePlan(SyntheticRows(300), 1, options);
  std::set<std::size_t> seen_tenants;
  std::size_t repeats = 0;
  for (const PlannedRequest& request : plan) {
    // With a share of 1, only a tenant's first request is new.
    EXPECT_EQ(request.repeat, seen_tenants.count(request.tenant) == 1);
    seen_tenants.insert(request.tenant);
    repeats += request.repeat;
  }
  EXPECT_EQ(repeats, 300u - seen_tenants.size());

  options.repeat_share = 0;
  auto fresh = MakePlan(SyntheticRows(300), 1, options);
  std::set<std::uint64_t> seeds;
  for (const PlannedRequest& request : fresh) {
    EXPECT_FALSE(request.repeat);
    seeds.insert(request.prompt_seed);
  }
  EXPECT_EQ(seeds.size(), 300u);
}

TEST(ReplayPlan, BodyHasPromptWords) {
  PlannedRequest request;
  request.prompt_seed = 42;
  request.prompt_tokens = 250;
  request.max_tokens = 17;
  request.stream = true;
  json::object body = json::parse(gateway::replay::ChatRequestBody(request, "m-1")).as_object();
  EXPECT_EQ(body.at("model").as_string(), "m-1");
  EXPECT_EQ(body.at("max_tokens").as_int64(), 17);
  EXPECT_TRUE(body.at("stream").as_bool());
  std::string content(body.at("messages").at(0).at("content").as_string());
  EXPECT_EQ(std::count(content.begin(), content.end(), ' '), 249);
  EXPECT_TRUE(content.starts_with("q42 "));
}

TEST(ReplaySummary, NearestRankPercentiles) {
  std::vector<double> values;
  for (int i = 100; i >= 1; --i) values.push_back(i);
  auto p = ComputePercentiles(values);
  EXPECT_EQ(p.count, 100u);
  EXPECT_DOUBLE_EQ(p.p50, 50);
  EXPECT_DOUBLE_EQ(p.p99, 99);
  EXPECT_DOUBLE_EQ(p.max, 100);
  EXPECT_DOUBLE_EQ(p.mean, 50.5);
  EXPECT_EQ(ComputePercentiles({}).count, 0u);
}

// The mock upstream, started on a kernel-chosen port.
class Upstream {
 public:
  Upstream() {
    ProcessOptions options;
    options.argv = {MOCK_UPSTREAM_PATH, "--port=0", "--port_file=" + (dir_ / "port").string(),
                    "--tokens_per_second=400", "--first_token_delay_ms=5"};
    process_.emplace(std::move(options));
    auto deadline = std::chrono::steady_clock::now() + seconds(10);
    while (!std::filesystem::exists(dir_ / "port")) {
      if (!process_->running() || std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("memward-mock-upstream did not start: " + process_->describe());
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    port_ = std::stoi(integration::read_text_file(dir_ / "port"));
  }
  int port() const { return port_; }
  pid_t pid() const { return process_->pid(); }

 private:
  TempDir dir_{"memward-mock"};
  std::optional<Process> process_;
  int port_ = 0;
};

// The conversation trace's first 20 s, sent within 2 s.
std::vector<std::string> ShortReplayArgs(int port) {
  return {REPLAY_PATH, "--trace=" TRACE_DIR "/AzureLLMInferenceTrace_conv.csv",
          "--gateway=127.0.0.1:" + std::to_string(port), "--trace_duration_s=20",
          "--time_compression=10", "--tenants=4", "--repeat_share=0.2"};
}

std::size_t RowsInFirstSeconds(double seconds_of_trace) {
  std::string error;
  auto slice = LoadTrace(TRACE_DIR "/AzureLLMInferenceTrace_conv.csv", 0, seconds_of_trace, 0, error);
  return slice ? slice->rows.size() : 0;
}

TEST(TraceReplay, ReplaysSliceAgainstMock) {
  Upstream upstream;
  TempDir dir("memward-replay");
  ProcessOptions options;
  options.argv = ShortReplayArgs(upstream.port());
  options.argv.push_back("--pid=" + std::to_string(upstream.pid()));
  options.argv.push_back("--summary_json=" + (dir / "summary.json").string());
  options.argv.push_back("--records_csv=" + (dir / "records.csv").string());
  options.argv.push_back("--rss_csv=" + (dir / "rss.csv").string());
  RunResult result = integration::run_program(std::move(options), seconds(60));
  ASSERT_TRUE(result.exited_with(0)) << result.description;

  const std::size_t rows = RowsInFirstSeconds(20);
  ASSERT_GT(rows, 20u);
  const std::string& out = result.stdout_text;
  EXPECT_NE(out.find("replayed " + std::to_string(rows) + " requests of AzureLLMInferenceTrace_conv.csv"),
            std::string::npos) << out;
  EXPECT_NE(out.find("requests by status: 200=" + std::to_string(rows) + "\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("incomplete 200 streams: 0"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(resident memory \(VmRSS, \d+ samples\): mean [0-9.]+ MiB)")))
      << out;
  EXPECT_NE(out.find("tenant1: "), std::string::npos) << out;
  EXPECT_NE(out.find("licensed under CC BY 4.0"), std::string::npos) << out;
  EXPECT_NE(out.find("Splitwise: Efficient generative LLM inference using phase splitting"),
            std::string::npos) << out;

  json::object summary = json::parse(integration::read_text_file(dir / "summary.json")).as_object();
  EXPECT_EQ(summary.at("planned").as_int64(), static_cast<std::int64_t>(rows));
  EXPECT_EQ(summary.at("by_status").at("200").as_int64(), static_cast<std::int64_t>(rows));
  EXPECT_EQ(summary.at("transport_errors").as_int64(), 0);
  EXPECT_GT(summary.at("repeats").as_int64(), 0);
  EXPECT_GT(summary.at("rss_samples").as_int64(), 0);
  EXPECT_GT(summary.at("rss_mean_bytes").as_double(), 1e6);
  EXPECT_GT(summary.at("latency_ms").at("p99").as_double(), 0);

  std::string records = integration::read_text_file(dir / "records.csv");
  EXPECT_EQ(static_cast<std::size_t>(std::count(records.begin(), records.end(), '\n')), rows + 1);
  std::string rss = integration::read_text_file(dir / "rss.csv");
  EXPECT_TRUE(rss.starts_with("time_s,rss_bytes\n")) << rss;
}

TEST(TraceReplay, CountsErrorStatuses) {
  Upstream upstream;
  ProcessOptions options;
  options.argv = ShortReplayArgs(upstream.port());
  options.argv.push_back("--path=/v1/no-such-route");
  RunResult result = integration::run_program(std::move(options), seconds(60));
  ASSERT_TRUE(result.exited_with(0)) << result.description;
  EXPECT_NE(result.stdout_text.find("requests by status: 404=" + std::to_string(RowsInFirstSeconds(20))),
            std::string::npos) << result.stdout_text;
}

TEST(TraceReplay, CountsRefusedConnections) {
  TempDir dir("memward-replay");
  // A port that was free a moment ago, with no listener now.
  std::uint16_t port = 0;
  {
    Upstream upstream;
    port = upstream.port();
  }
  ProcessOptions options;
  options.argv = ShortReplayArgs(port);
  options.argv.push_back("--summary_json=" + (dir / "summary.json").string());
  RunResult result = integration::run_program(std::move(options), seconds(60));
  ASSERT_TRUE(result.exited_with(0)) << result.description;
  json::object summary = json::parse(integration::read_text_file(dir / "summary.json")).as_object();
  EXPECT_EQ(summary.at("transport_errors").as_int64(),
            static_cast<std::int64_t>(RowsInFirstSeconds(20)));
  EXPECT_NE(result.stdout_text.find("no-response="), std::string::npos) << result.stdout_text;
}

TEST(TraceReplay, InvalidFlagsExitWithUsage) {
  struct Case {
    std::string flag;
    std::string message;
  };
  const Case cases[] = {
      {"--stream_share=1.5", "--stream_share must be from 0 to 1, not 1.5"},
      {"--gateway=localhost", "--gateway must be IPV4:PORT"},
      {"--model=a\"b", "--model must be letters, digits"},
  };
  for (const Case& c : cases) {
    ProcessOptions options;
    options.argv = {REPLAY_PATH, "--trace=" TRACE_DIR "/AzureLLMInferenceTrace_conv.csv", c.flag};
    RunResult result = integration::run_program(std::move(options), seconds(10));
    EXPECT_TRUE(result.exited_with(2)) << c.flag << ": " << result.description;
    EXPECT_NE(result.stderr_text.find(c.message), std::string::npos) << result.stderr_text;
  }
  ProcessOptions missing;
  missing.argv = {REPLAY_PATH, "--trace=/nonexistent/trace.csv"};
  RunResult result = integration::run_program(std::move(missing), seconds(10));
  EXPECT_TRUE(result.exited_with(1)) << result.description;
  EXPECT_NE(result.stderr_text.find("cannot open trace file /nonexistent/trace.csv"), std::string::npos)
      << result.stderr_text;
}

}  // namespace
}  // namespace memward::gateway_test

namespace memward::gateway_test {
namespace {

// memward-gateway in front of the mock, with three tenants; the replayer
// reads their API keys from the same config.
TEST(TraceReplay, ReplaysThroughGateway) {
  Upstream upstream;
  TempDir dir("memward-replay");
  json::array tenants;
  for (const char* name : {"alpha", "beta", "gamma"}) {
    tenants.push_back(json::object{{"name", name},
                                   {"api_keys", json::array{std::string("sk-test-") + name}}});
  }
  json::object config{
      {"listen", "127.0.0.1:0"},
      {"access_log", (dir / "access.log").string()},
      {"tenants", std::move(tenants)},
      {"models", json::array{json::object{
                     {"name", "mock-chat"},
                     {"upstreams", json::array{"127.0.0.1:" + std::to_string(upstream.port())}}}}},
  };
  integration::write_text_file(dir / "gateway.json", json::serialize(config));

  ProcessOptions gateway_options;
  gateway_options.argv = {GATEWAY_PATH, "--config=" + (dir / "gateway.json").string()};
  Process gateway(std::move(gateway_options));
  std::smatch match;
  const std::regex listening(R"(listening on 127\.0\.0\.1:(\d+))");
  auto deadline = std::chrono::steady_clock::now() + seconds(15);
  std::string gateway_stderr;
  while (!std::regex_search(gateway_stderr = gateway.stderr_text(), match, listening)) {
    ASSERT_TRUE(gateway.running()) << gateway.describe();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << gateway.describe();
    std::this_thread::sleep_for(milliseconds(20));
  }
  const std::string port = match[1];

  ProcessOptions options;
  options.argv = {REPLAY_PATH,
                  "--trace=" TRACE_DIR "/AzureLLMInferenceTrace_conv.csv",
                  "--gateway=127.0.0.1:" + port,
                  "--gateway_config=" + (dir / "gateway.json").string(),
                  "--trace_duration_s=20",
                  "--time_compression=10",
                  "--repeat_share=0.3",
                  "--pid=" + std::to_string(gateway.pid()),
                  "--summary_json=" + (dir / "summary.json").string()};
  RunResult result = integration::run_program(std::move(options), seconds(60));
  ASSERT_TRUE(result.exited_with(0)) << result.description;

  const std::size_t rows = RowsInFirstSeconds(20);
  const std::string& out = result.stdout_text;
  EXPECT_NE(out.find("requests by status: 200=" + std::to_string(rows) + "\n"), std::string::npos)
      << out << gateway.describe();
  EXPECT_NE(out.find("incomplete 200 streams: 0"), std::string::npos) << out;
  EXPECT_NE(out.find("  alpha: "), std::string::npos) << out;
  EXPECT_NE(out.find("  gamma: "), std::string::npos) << out;
  json::object summary = json::parse(integration::read_text_file(dir / "summary.json")).as_object();
  EXPECT_GT(summary.at("rss_samples").as_int64(), 0);

  // Every request reached the gateway with its tenant's key.
  std::string log = integration::read_text_file(dir / "access.log");
  EXPECT_EQ(static_cast<std::size_t>(std::count(log.begin(), log.end(), '\n')), rows) << log;
  EXPECT_EQ(log.find("\"status\":401"), std::string::npos) << log;
  EXPECT_NE(log.find("\"tenant\":\"alpha\""), std::string::npos) << log;

  gateway.send_signal(SIGTERM);
  std::optional<int> status = gateway.wait_for_exit(seconds(30));
  ASSERT_TRUE(status.has_value()) << gateway.describe();
  EXPECT_TRUE(WIFEXITED(*status)) << gateway.describe();
}

}  // namespace
}  // namespace memward::gateway_test
