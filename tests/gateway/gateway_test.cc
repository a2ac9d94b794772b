// memward-gateway end to end: the gateway runs under
// LD_PRELOAD=libmemward_preload.so in front of one or two
// memward-mock-upstream processes, all on 127.0.0.1 ports the kernel picks.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "harness/process.h"
#include "harness/procfs.h"
#include "http_client.h"

namespace memward::gateway_test {
namespace {

namespace json = boost::json;
using integration::Process;
using integration::ProcessOptions;
using integration::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kAcmeKey[] = "sk-acme-test-0001";
constexpr char kGlobexKey[] = "sk-globex-test-0001";
constexpr char kTinyKey[] = "sk-tiny-test-0001";

// Polls `condition` every 20 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, milliseconds timeout = seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return condition();
}

class MockUpstream {
 public:
  explicit MockUpstream(std::vector<std::string> flags = {"--tokens_per_second=0",
                                                          "--first_token_delay_ms=0"}) {
    ProcessOptions options;
    options.argv = {MOCK_UPSTREAM_PATH, "--port=0", "--port_file=" + (dir_ / "port").string()};
    options.argv.insert(options.argv.end(), flags.begin(), flags.end());
    process_.emplace(std::move(options));
    if (!WaitFor([&] { return std::filesystem::exists(dir_ / "port") || !process_->running(); }) ||
        !std::filesystem::exists(dir_ / "port")) {
      throw std::runtime_error("memward-mock-upstream did not start: " + process_->describe());
    }
    port_ = static_cast<std::uint16_t>(std::stoi(integration::read_text_file(dir_ / "port")));
  }

  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  Process& process() { return *process_; }

  std::int64_t Stat(std::string_view name) {
    return json::parse(Fetch(port_, "GET", "/mock/stats").body).at(name).as_int64();
  }

 private:
  TempDir dir_{"memward-mock"};
  std::optional<Process> process_;
  std::uint16_t port_ = 0;
};

// A config with three tenants (acme, globex, and tiny, whose hard limit is
// below any request's admission estimate) and one model on the given
// upstreams.
json::object BaseConfig(const std::vector<std::string>& upstreams) {
  json::array upstream_list;
  for (const std::string& address : upstreams) upstream_list.push_back(json::value(address));
  return json::object{
      {"listen", "127.0.0.1:0"},
      {"limits", json::object{{"max_body_bytes", "64k"}, {"upstream_header_timeout_ms", 5000}}},
      {"tenants",
       json::array{json::object{{"name", "acme"}, {"api_keys", json::array{kAcmeKey}}},
                   json::object{{"name", "globex"}, {"api_keys", json::array{kGlobexKey}}},
                   json::object{{"name", "tiny"},
                                {"api_keys", json::array{kTinyKey}},
                                {"hard_limit", "16k"}}}},
      {"models", json::array{json::object{{"name", "mock-chat"}, {"upstreams", upstream_list}}}},
      {"upstream", json::object{{"health_check_interval_ms", 200}}},
      {"cache", json::object{{"max_bytes", "8m"}, {"ttl_ms", 60000}}},
  };
}

class Gateway {
 public:
  explicit Gateway(const json::object& config) {
    json::object with_log = config;
    with_log["access_log"] = (dir_ / "access.log").string();
    integration::write_text_file(dir_ / "config.json", json::serialize(with_log));
    ProcessOptions options;
    options.argv = {GATEWAY_PATH, "--config", (dir_ / "config.json").string()};
    options.ld_preload = integration::preload_path();
    process_.emplace(std::move(options));
    std::smatch match;
    static const std::regex kListening("listening on 127\\.0\\.0\\.1:([0-9]+)");
    bool started = WaitFor([&] {
      std::string text = process_->stderr_text();
      if (!std::regex_search(text, match, kListening)) return !process_->running();
      port_ = static_cast<std::uint16_t>(std::stoi(match[1].str()));
      return true;
    });
    if (!started || port_ == 0) {
      throw std::runtime_error("memward-gateway did not start: " + process_->describe());
    }
  }

  std::uint16_t port() const { return port_; }
  Process& process() { return *process_; }

  HttpReply Post(std::string_view path, const std::string& body, std::string_view key = kAcmeKey,
                 Headers headers = {}) {
    if (!key.empty()) headers.emplace_back("authorization", "Bearer " + std::string(key));
    return Fetch(port_, "POST", path, body, headers);
  }

  // The access log's records, one per finished request.
  std::vector<json::object> AccessLog() {
    std::vector<json::object> records;
    std::string text = integration::read_text_file(dir_ / "access.log");
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      records.push_back(json::parse(text.substr(start, end - start)).as_object());
    }
    return records;
  }

  // A value of the gateway's /metrics, or -1 when the line is missing.
  double Metric(std::string_view line_prefix) {
    std::string text = Fetch(port_, "GET", "/metrics").body;
    std::string prefix = std::string(line_prefix) + " ";
    for (std::size_t at = text.find(prefix); at != std::string::npos;
         at = text.find(prefix, at + 1)) {
      if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + prefix.size()));
    }
    return -1;
  }

  std::string Describe() { return process_->describe(); }

 private:
  TempDir dir_{"memward-gateway"};
  std::optional<Process> process_;
  std::uint16_t port_ = 0;
};

std::string ChatBody(std::string_view prompt, int max_tokens, bool stream,
                     std::string_view model = "mock-chat") {
  return json::serialize(json::object{
      {"model", model},
      {"messages", json::array{json::object{{"role", "user"}, {"content", prompt}}}},
      {"max_tokens", max_tokens},
      {"stream", stream}});
}

json::object ErrorOf(const HttpReply& reply) {
  return json::parse(reply.body).at("error").as_object();
}

// Checks OpenAI's error shape: message, type, param and code all present.
void ExpectErrorShape(const HttpReply& reply) {
  json::object error = ErrorOf(reply);
  EXPECT_TRUE(error.at("message").is_string()) << reply.body;
  EXPECT_TRUE(error.at("type").is_string()) << reply.body;
  EXPECT_TRUE(error.contains("param")) << reply.body;
  EXPECT_TRUE(error.contains("code")) << reply.body;
  EXPECT_EQ(reply.headers.at("content-type"), "application/json");
}

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mock_.emplace();
    gateway_.emplace(BaseConfig({mock_->address()}));
  }

  std::optional<MockUpstream> mock_;
  std::optional<Gateway> gateway_;
};

TEST_F(GatewayTest, NonStreamedChatIsForwarded) {
  HttpReply reply = gateway_->Post("/v1/chat/completions", ChatBody("hello there", 5, false));
  ASSERT_EQ(reply.status, 200) << reply.body;
  json::object body = json::parse(reply.body).as_object();
  EXPECT_EQ(body.at("object").as_string(), "chat.completion");
  EXPECT_EQ(body.at("usage").at("completion_tokens").as_int64(), 5);
  EXPECT_EQ(reply.headers["x-memward-cache"], "fill");
  EXPECT_EQ(mock_->Stat("completions"), 1);
}

TEST_F(GatewayTest, LegacyCompletionIsForwarded) {
  std::string body = json::serialize(
      json::object{{"model", "mock-chat"}, {"prompt", "once upon"}, {"max_tokens", 3}});
  HttpReply reply = gateway_->Post("/v1/completions", body);
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(json::parse(reply.body).at("object").as_string(), "text_completion");
}

TEST_F(GatewayTest, StreamedChatPassesEventsThrough) {
  StreamReader reader(gateway_->port(), "/v1/chat/completions", ChatBody("stream me", 6, true),
                      {{"authorization", std::string("Bearer ") + kAcmeKey}});
  ASSERT_EQ(reader.status(), 200);
  std::string events;
  while (auto chunk = reader.NextChunk()) events += *chunk;
  std::vector<std::string> data = SseData(events);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.back(), "[DONE]");
  EXPECT_EQ(reader.status(), 200);
  EXPECT_EQ(json::parse(data.front()).at("object").as_string(), "chat.completion.chunk");
}

TEST_F(GatewayTest, StreamedEventArrivesBeforeUpstreamEnds) {
  // 30 tokens at 10 a second: the upstream produces events for 3 s, and
  // the whole stream (about 7.5 KB) fits in the gateway's 16 KiB relay
  // buffer. A gateway that passes each chunk on delivers the first event
  // while the mock still has the stream open. A gateway that waits for a
  // full buffer delivers it only after the mock has finished.
  StreamReader reader(gateway_->port(), "/v1/chat/completions",
                      ChatBody("mock-tokens-per-second=10 first", 30, true),
                      {{"authorization", std::string("Bearer ") + kAcmeKey}});
  ASSERT_EQ(reader.status(), 200);
  // A read may return only a chunk header, so read until one event ends.
  std::string received;
  while (received.find("\n\n") == std::string::npos) {
    std::optional<std::string> chunk = reader.NextChunk();
    ASSERT_TRUE(chunk.has_value()) << "the stream ended before its first event: " << received;
    received += *chunk;
  }
  std::vector<std::string> data = SseData(received);
  ASSERT_FALSE(data.empty()) << received;
  EXPECT_EQ(json::parse(data.front()).at("object").as_string(), "chat.completion.chunk");

  EXPECT_EQ(mock_->Stat("open_streams"), 1) << "the first event arrived after the upstream stream";
  EXPECT_EQ(mock_->Stat("streams_finished"), 0)
      << "the first event arrived after the upstream stream";
  reader.Abort();
}

TEST_F(GatewayTest, RepeatedRequestIsServedFromCache) {
  std::string body = ChatBody("cache this", 8, false);
  HttpReply first = gateway_->Post("/v1/chat/completions", body);
  ASSERT_EQ(first.status, 200) << first.body;
  // The same request with its keys in another order and extra spacing.
  json::object reordered = json::parse(body).as_object();
  std::string respaced = "{ \"stream\": false, \"max_tokens\": 8, \"messages\": " +
                         json::serialize(reordered.at("messages")) + ", \"model\": \"mock-chat\" }";
  HttpReply second = gateway_->Post("/v1/chat/completions", respaced);
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.headers["x-memward-cache"], "hit");
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(mock_->Stat("completions"), 1);
  EXPECT_EQ(gateway_->Metric("memward_gateway_cache_hits_total"), 1);
}

TEST_F(GatewayTest, CompletedStreamIsServedFromCache) {
  std::string body = ChatBody("stream cache", 4, true);
  HttpReply first = gateway_->Post("/v1/chat/completions", body);
  ASSERT_EQ(first.status, 200) << first.body;
  HttpReply second = gateway_->Post("/v1/chat/completions", body);
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.headers["x-memward-cache"], "hit");
  EXPECT_EQ(second.headers["content-type"], "text/event-stream");
  EXPECT_EQ(SseData(second.body), SseData(first.body));
  EXPECT_EQ(mock_->Stat("completions"), 1);
}

TEST_F(GatewayTest, TenantsDoNotShareCacheEntries) {
  std::string body = ChatBody("shared prompt", 4, false);
  ASSERT_EQ(gateway_->Post("/v1/chat/completions", body, kAcmeKey).status, 200);
  HttpReply other = gateway_->Post("/v1/chat/completions", body, kGlobexKey);
  ASSERT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(other.headers["x-memward-cache"], "fill");
  EXPECT_EQ(mock_->Stat("completions"), 2);
  // Each line is written after its response, so the last may lag a little.
  ASSERT_TRUE(WaitFor([&] { return gateway_->AccessLog().size() == 2; }));
  std::vector<json::object> log = gateway_->AccessLog();
  EXPECT_EQ(log[0].at("tenant").as_string(), "acme");
  EXPECT_EQ(log[1].at("tenant").as_string(), "globex");
  EXPECT_EQ(log[1].at("model").as_string(), "mock-chat");
  EXPECT_EQ(log[1].at("status").as_int64(), 200);
}

TEST_F(GatewayTest, MissingOrUnknownKeyGets401) {
  HttpReply missing = gateway_->Post("/v1/chat/completions", ChatBody("hi", 1, false), "");
  EXPECT_EQ(missing.status, 401) << missing.body;
  ExpectErrorShape(missing);
  HttpReply unknown =
      gateway_->Post("/v1/chat/completions", ChatBody("hi", 1, false), "sk-not-a-key");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(ErrorOf(unknown).at("code").as_string(), "invalid_api_key");
  EXPECT_EQ(Fetch(gateway_->port(), "GET", "/v1/models").status, 401);
  EXPECT_EQ(mock_->Stat("completions"), 0);
}

TEST_F(GatewayTest, MalformedJsonGets400) {
  HttpReply reply = gateway_->Post("/v1/chat/completions", "{\"model\": \"mock-chat\", ");
  EXPECT_EQ(reply.status, 400);
  ExpectErrorShape(reply);
  EXPECT_EQ(ErrorOf(reply).at("type").as_string(), "invalid_request_error");
  EXPECT_EQ(ErrorOf(reply).at("code").as_string(), "invalid_json");
}

TEST_F(GatewayTest, InvalidFieldsGet400WithParam) {
  struct Case {
    std::string body;
    std::string param;
  };
  const Case cases[] = {
      {R"({"messages":[{"role":"user","content":"x"}]})", "model"},
      {R"({"model":"mock-chat"})", "messages"},
      {R"({"model":"mock-chat","messages":[]})", "messages"},
      {R"({"model":"mock-chat","messages":[{"role":"user","content":"x"}],"stream":"yes"})",
       "stream"},
  };
  for (const Case& c : cases) {
    HttpReply reply = gateway_->Post("/v1/chat/completions", c.body);
    EXPECT_EQ(reply.status, 400) << c.body;
    EXPECT_EQ(ErrorOf(reply).at("param").as_string(), c.param) << c.body;
  }
  HttpReply array = gateway_->Post("/v1/chat/completions", "[1,2]");
  EXPECT_EQ(array.status, 400);
  EXPECT_EQ(mock_->Stat("completions"), 0);
}

TEST_F(GatewayTest, UnknownModelGets404) {
  HttpReply reply = gateway_->Post("/v1/chat/completions", ChatBody("hi", 1, false, "gpt-nope"));
  EXPECT_EQ(reply.status, 404);
  ExpectErrorShape(reply);
  EXPECT_EQ(ErrorOf(reply).at("code").as_string(), "model_not_found");
}

TEST_F(GatewayTest, OversizedBodyGets413) {
  std::string big(70 << 10, 'x');
  HttpReply reply = gateway_->Post("/v1/chat/completions", ChatBody(big, 1, false));
  EXPECT_EQ(reply.status, 413);
  ExpectErrorShape(reply);
  EXPECT_EQ(ErrorOf(reply).at("code").as_string(), "request_too_large");
  EXPECT_EQ(mock_->Stat("completions"), 0);
}

TEST_F(GatewayTest, OversizedChunkedBodyGets413) {
  std::string big(70 << 10, 'x');
  HttpReply reply = gateway_->Post("/v1/chat/completions", ChatBody(big, 1, false), kAcmeKey,
                                   {{"transfer-encoding", "chunked"}});
  EXPECT_EQ(reply.status, 413);
  ExpectErrorShape(reply);
}

TEST_F(GatewayTest, TenantOverBudgetGets429) {
  HttpReply reply = gateway_->Post("/v1/chat/completions", ChatBody("hi", 1, false), kTinyKey);
  ASSERT_EQ(reply.status, 429) << reply.body;
  ExpectErrorShape(reply);
  EXPECT_EQ(ErrorOf(reply).at("code").as_string(), "tenant_over_budget");
  EXPECT_EQ(reply.headers["retry-after"], "1");
  EXPECT_EQ(mock_->Stat("completions"), 0);
  // Other tenants are still admitted.
  EXPECT_EQ(gateway_->Post("/v1/chat/completions", ChatBody("hi", 1, false)).status, 200);
}

// TODO: a test of 503 under memory pressure needs a memory cgroup smaller
// than the load; bench/gateway/pressure.py covers it as root.

TEST_F(GatewayTest, ClientDisconnectCancelsUpstreamStream) {
  // 10 tokens a second: the stream lasts 20 s unless it is cancelled. The
  // first chunks arrive long before that, so the gateway passes the stream
  // on as it comes instead of buffering it.
  std::string body = ChatBody("mock-tokens-per-second=10 go", 200, true);
  {
    StreamReader reader(gateway_->port(), "/v1/chat/completions", body,
                        {{"authorization", std::string("Bearer ") + kAcmeKey}});
    ASSERT_EQ(reader.status(), 200);
    ASSERT_TRUE(reader.NextChunk().has_value());
    ASSERT_TRUE(reader.NextChunk().has_value());
    reader.Abort();
  }
  EXPECT_TRUE(WaitFor([&] { return mock_->Stat("client_disconnects") == 1; }))
      << "the upstream stream was not cancelled";
  EXPECT_EQ(mock_->Stat("streams_finished"), 0);
  ASSERT_TRUE(WaitFor([&] { return gateway_->AccessLog().size() == 1; }));
  json::object record = gateway_->AccessLog()[0];
  EXPECT_EQ(record.at("status").as_int64(), 499);
  EXPECT_EQ(record.at("cache").as_string(), "miss");
  EXPECT_EQ(gateway_->Metric("memward_gateway_client_disconnects_total"), 1);
}

TEST_F(GatewayTest, ClientDisconnectBeforeHeadersCancelsUpstream) {
  std::string body = ChatBody("mock-delay-ms=3000 wait", 2, false);
  // A client that gives up after 300 ms and closes its connection.
  EXPECT_THROW(Fetch(gateway_->port(), "POST", "/v1/chat/completions", body,
                     {{"authorization", std::string("Bearer ") + kAcmeKey}}, milliseconds(300)),
               std::exception);
  ASSERT_TRUE(WaitFor([&] { return gateway_->AccessLog().size() == 1; }, seconds(5)))
      << "the gateway kept waiting for the upstream after the client left";
  EXPECT_EQ(gateway_->AccessLog()[0].at("status").as_int64(), 499);
}

TEST_F(GatewayTest, UpstreamErrorStatusIsPassedOn) {
  for (int status : {429, 500, 503}) {
    HttpReply reply = gateway_->Post(
        "/v1/chat/completions", ChatBody("mock-fail=" + std::to_string(status) + " x", 2, false));
    EXPECT_EQ(reply.status, status) << reply.body;
    ExpectErrorShape(reply);
  }
  // Errors are not cached.
  HttpReply again = gateway_->Post("/v1/chat/completions", ChatBody("mock-fail=500 x", 2, false));
  EXPECT_EQ(again.headers["x-memward-cache"], "miss");
}

TEST_F(GatewayTest, UpstreamDropMidStreamEndsStreamUnfinished) {
  StreamReader reader(gateway_->port(), "/v1/chat/completions",
                      ChatBody("mock-drop-after-tokens=3 x", 20, true),
                      {{"authorization", std::string("Bearer ") + kAcmeKey}});
  ASSERT_EQ(reader.status(), 200);
  std::string events;
  EXPECT_ANY_THROW({
    while (auto chunk = reader.NextChunk()) events += *chunk;
  });
  std::vector<std::string> data = SseData(events);
  EXPECT_TRUE(data.empty() || data.back() != "[DONE]");
  ASSERT_TRUE(WaitFor([&] { return gateway_->AccessLog().size() == 1; }));
  EXPECT_EQ(gateway_->AccessLog()[0].at("error").as_string(), "upstream failed during the stream");
}

TEST(GatewayUpstream, SlowUpstreamGets504) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["limits"].as_object()["upstream_header_timeout_ms"] = 300;
  Gateway gateway(config);
  HttpReply reply = gateway.Post("/v1/chat/completions", ChatBody("mock-delay-ms=3000 x", 1, false));
  EXPECT_EQ(reply.status, 504);
  ExpectErrorShape(reply);
  EXPECT_EQ(ErrorOf(reply).at("code").as_string(), "upstream_timeout");
}

TEST(GatewayUpstream, UnreachableUpstreamGets502) {
  // A port that was free a moment ago: nothing listens there.
  std::uint16_t closed_port;
  {
    MockUpstream briefly;
    closed_port = briefly.port();
  }
  json::object config = BaseConfig({"127.0.0.1:" + std::to_string(closed_port)});
  config["upstream"].as_object()["health_check_interval_ms"] = 0;
  Gateway gateway(config);
  HttpReply reply = gateway.Post("/v1/chat/completions", ChatBody("hi", 1, false));
  EXPECT_EQ(reply.status, 502) << reply.body;
  ExpectErrorShape(reply);
}

TEST(GatewayUpstream, RoundRobinSkipsUnhealthyEndpoint) {
  MockUpstream first;
  MockUpstream second;
  json::object config = BaseConfig({first.address(), second.address()});
  config["cache"].as_object()["max_bytes"] = 0;
  Gateway gateway(config);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(gateway.Post("/v1/chat/completions", ChatBody("rr", 1, false)).status, 200);
  }
  EXPECT_EQ(first.Stat("completions"), 2);
  EXPECT_EQ(second.Stat("completions"), 2);

  second.process().kill_group();
  ASSERT_TRUE(WaitFor([&] {
    return gateway.Metric("memward_gateway_upstream_healthy{endpoint=\"" + second.address() +
                          "\"}") == 0;
  })) << "the health check did not mark the stopped endpoint unhealthy";
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(gateway.Post("/v1/chat/completions", ChatBody("rr", 1, false)).status, 200);
  }
  EXPECT_EQ(first.Stat("completions"), 6);
}

TEST_F(GatewayTest, RequestsLeaveNoEscapedBytes) {
  // Misses that fill the cache, hits, streams, errors and rejections.
  for (int i = 0; i < 3; ++i) {
    std::string n = std::to_string(i);
    ASSERT_EQ(gateway_->Post("/v1/chat/completions", ChatBody("fill " + n, 16, false)).status, 200);
    ASSERT_EQ(gateway_->Post("/v1/chat/completions", ChatBody("fill " + n, 16, false)).status, 200);
    ASSERT_EQ(gateway_->Post("/v1/chat/completions", ChatBody("stream " + n, 16, true)).status, 200);
    ASSERT_EQ(gateway_->Post("/v1/chat/completions", ChatBody("stream " + n, 16, true)).status, 200);
    ASSERT_EQ(gateway_->Post("/v1/chat/completions", ChatBody("mock-fail=500 " + n, 4, false)).status,
              500);
    ASSERT_EQ(gateway_->Post("/v1/chat/completions", "{bad json " + n).status, 400);
  }
  // Each line is written after its response, so the last may lag a little.
  ASSERT_TRUE(WaitFor([&] { return gateway_->AccessLog().size() == 18; }));
  std::vector<json::object> log = gateway_->AccessLog();
  int measured = 0;
  int fills = 0;
  for (const json::object& record : log) {
    if (!record.at("memward_request").as_bool()) continue;
    ++measured;
    // Cache entries are built in the tenant's scope, outside the request,
    // so requests that fill the cache leave nothing behind either.
    if (record.at("cache").as_string() == "fill") ++fills;
    EXPECT_EQ(record.at("escaped_bytes").as_int64(), 0) << json::serialize(record);
    EXPECT_GT(record.at("peak_bytes").as_int64(), 0) << json::serialize(record);
  }
  EXPECT_EQ(measured, 18) << "requests ran without a memward request: " << gateway_->Describe();
  EXPECT_EQ(fills, 6);
  EXPECT_EQ(gateway_->Metric("memward_gateway_requests_with_escapes_other_total"), 0);
  EXPECT_EQ(gateway_->Metric("memward_gateway_escaped_bytes_cache_fill_total"), 0);
}

TEST_F(GatewayTest, SmallRoutesRespond) {
  HttpReply health = Fetch(gateway_->port(), "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, R"({"status":"ok"})");
  HttpReply models = Fetch(gateway_->port(), "GET", "/v1/models", {},
                           {{"authorization", std::string("Bearer ") + kGlobexKey}});
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(json::parse(models.body).at("data").at(0).at("id").as_string(), "mock-chat");
  HttpReply metrics = Fetch(gateway_->port(), "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("memward_gateway_requests_total"), std::string::npos);
  EXPECT_EQ(Fetch(gateway_->port(), "GET", "/nope").status, 404);
  HttpReply wrong_method = Fetch(gateway_->port(), "GET", "/v1/chat/completions");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers["allow"], "POST");
}

TEST(GatewayThreads, ConcurrentClientsOnTwoThreads) {
  MockUpstream mock({"--tokens_per_second=200", "--first_token_delay_ms=0", "--threads=2"});
  json::object config = BaseConfig({mock.address()});
  config["threads"] = 2;
  config["cache"].as_object()["max_bytes"] = 0;
  Gateway gateway(config);
  constexpr int kClients = 8;
  constexpr int kRequestsPerClient = 5;
  std::vector<int> ok(kClients, 0);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kRequestsPerClient; ++i) {
        bool stream = (c + i) % 2 == 0;
        HttpReply reply = gateway.Post("/v1/chat/completions",
                                       ChatBody("client " + std::to_string(c), 10, stream));
        if (reply.status == 200) ++ok[c];
      }
    });
  }
  for (std::thread& client : clients) client.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(ok[c], kRequestsPerClient) << "client " << c;
  EXPECT_EQ(mock.Stat("completions"), kClients * kRequestsPerClient);
  ASSERT_TRUE(WaitFor([&] { return gateway.AccessLog().size() == kClients * kRequestsPerClient; }));
  for (const json::object& record : gateway.AccessLog()) {
    EXPECT_EQ(record.at("escaped_bytes").as_int64(), 0) << json::serialize(record);
  }
}

TEST(GatewayHooks, IdlePeriodPurgesOnce) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["hooks"] = json::object{{"idle_purge_after_ms", 100}};
  Gateway gateway(config);
  ASSERT_EQ(gateway.Post("/v1/chat/completions", ChatBody("purge", 4, false)).status, 200);
  EXPECT_TRUE(WaitFor([&] { return gateway.Metric("memward_gateway_idle_purges_total") == 1; }));
  // No request since: no second purge.
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(gateway.Metric("memward_gateway_idle_purges_total"), 1);
}

TEST(GatewayHooks, UnusedCacheEntryIsDroppedAndPurged) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["hooks"] = json::object{{"cache_unused_after_ms", 200}};
  Gateway gateway(config);
  ASSERT_EQ(gateway.Post("/v1/chat/completions", ChatBody("unused", 4, false)).status, 200);
  ASSERT_TRUE(WaitFor([&] { return gateway.Metric("memward_gateway_cache_entries") == 1; }));

  EXPECT_TRUE(WaitFor([&] { return gateway.Metric("memward_gateway_cache_entries") == 0; }));
  EXPECT_GT(gateway.Metric("memward_gateway_cache_unused_reclaimed_bytes_total"), 0);
  EXPECT_EQ(gateway.Metric("memward_gateway_cache_bytes"), 0);
  EXPECT_GE(gateway.Metric("memward_gateway_cache_purges_total"), 1);
}

TEST(GatewayHooks, UnusedCacheEntryStaysWithReclaimerOff) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["hooks"] = json::object{{"cache_reclaimer", false}, {"cache_unused_after_ms", 100}};
  Gateway gateway(config);
  ASSERT_EQ(gateway.Post("/v1/chat/completions", ChatBody("kept", 4, false)).status, 200);
  ASSERT_TRUE(WaitFor([&] { return gateway.Metric("memward_gateway_cache_entries") == 1; }));

  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(gateway.Metric("memward_gateway_cache_entries"), 1);
  EXPECT_EQ(gateway.Metric("memward_gateway_cache_purges_total"), 0);
}

TEST(GatewayHooks, HooksOffRunsWithoutMemwardRequests) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["hooks"] = json::object{{"scopes", false},
                                 {"request_memory_resource", false},
                                 {"admission", false},
                                 {"cache_reclaimer", false},
                                 {"idle_purge", false}};
  Gateway gateway(config);
  // Without admission, the tiny tenant's budget is not checked.
  HttpReply reply = gateway.Post("/v1/chat/completions", ChatBody("off", 4, false), kTinyKey);
  ASSERT_EQ(reply.status, 200) << reply.body;
  ASSERT_TRUE(WaitFor([&] { return gateway.AccessLog().size() == 1; }));
  EXPECT_FALSE(gateway.AccessLog()[0].at("memward_request").as_bool());
  EXPECT_EQ(gateway.Metric("memward_gateway_measured_requests_total"), 0);
}

TEST(GatewayHooks, TenantOverSoftLimitIsShedWith429) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["tenants"].as_array().push_back(json::object{
      {"name", "soft"}, {"api_keys", json::array{"sk-soft-1"}}, {"soft_limit", "16k"}});
  Gateway gateway(config);
  HttpReply reply = gateway.Post("/v1/chat/completions", ChatBody("hi", 1, false), "sk-soft-1");
  EXPECT_EQ(reply.status, 429) << reply.body;
  EXPECT_EQ(ErrorOf(reply).at("code").as_string(), "tenant_over_budget");
  EXPECT_EQ(reply.headers["retry-after"], "1");
  EXPECT_EQ(gateway.Metric("memward_gateway_rejected_over_budget_total"), 1);
}

TEST(GatewayHooks, EnforcedHardLimitGets500) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["limits"].as_object()["max_body_bytes"] = "4k";
  config["tenants"].as_array().push_back(json::object{{"name", "strict"},
                                                      {"api_keys", json::array{"sk-strict-1"}},
                                                      {"hard_limit", "128k"},
                                                      {"enforce_hard_limit", true}});
  Gateway gateway(config);
  // Admitted (a small body is estimated at about 80 KiB), but collecting a
  // response of 40,000 tokens (about 300 KB) inside the request passes the
  // enforced limit.
  HttpReply reply =
      gateway.Post("/v1/chat/completions", ChatBody("large", 40000, false), "sk-strict-1");
  EXPECT_EQ(reply.status, 500) << reply.body;
  EXPECT_EQ(ErrorOf(reply).at("code").as_string(), "tenant_memory_exhausted");
  // The gateway keeps serving, the strict tenant too.
  EXPECT_EQ(gateway.Post("/v1/chat/completions", ChatBody("small", 2, false)).status, 200);
  EXPECT_EQ(gateway.Post("/v1/chat/completions", ChatBody("small", 2, false), "sk-strict-1").status,
            200);
}

TEST(GatewayShutdown, SigtermDrainsOpenStream) {
  MockUpstream mock;
  Gateway gateway(BaseConfig({mock.address()}));
  // 20 tokens at 20 a second: about a second of stream.
  StreamReader reader(gateway.port(), "/v1/chat/completions",
                      ChatBody("mock-tokens-per-second=20 drain", 20, true),
                      {{"authorization", std::string("Bearer ") + kAcmeKey}});
  ASSERT_EQ(reader.status(), 200);
  ASSERT_TRUE(reader.NextChunk().has_value());
  gateway.process().send_signal(SIGTERM);
  std::string events;
  while (auto chunk = reader.NextChunk()) events += *chunk;
  std::vector<std::string> data = SseData(events);
  ASSERT_FALSE(data.empty());
  EXPECT_EQ(data.back(), "[DONE]");
  std::optional<int> status = gateway.process().wait_for_exit(seconds(10));
  ASSERT_TRUE(status.has_value()) << gateway.Describe();
  ASSERT_TRUE(WIFEXITED(*status)) << gateway.Describe();
  EXPECT_EQ(WEXITSTATUS(*status), 0) << gateway.Describe();
}

TEST(GatewayShutdown, DrainTimeoutClosesLongStream) {
  MockUpstream mock;
  json::object config = BaseConfig({mock.address()});
  config["limits"].as_object()["shutdown_drain_ms"] = 300;
  Gateway gateway(config);
  // 200 tokens at 10 a second: 20 s, far past the drain time.
  StreamReader reader(gateway.port(), "/v1/chat/completions",
                      ChatBody("mock-tokens-per-second=10 long", 200, true),
                      {{"authorization", std::string("Bearer ") + kAcmeKey}});
  ASSERT_EQ(reader.status(), 200);
  ASSERT_TRUE(reader.NextChunk().has_value());
  gateway.process().send_signal(SIGTERM);
  std::optional<int> status = gateway.process().wait_for_exit(seconds(5));
  ASSERT_TRUE(status.has_value()) << gateway.Describe();
  ASSERT_TRUE(WIFEXITED(*status)) << gateway.Describe();
  EXPECT_EQ(WEXITSTATUS(*status), 0) << gateway.Describe();
  std::string events;
  EXPECT_ANY_THROW({
    while (auto chunk = reader.NextChunk()) events += *chunk;
  });
  EXPECT_TRUE(WaitFor([&] { return mock.Stat("client_disconnects") == 1; }))
      << "the upstream stream was not cancelled at shutdown";
}

struct BadConfigCase {
  const char* name;
  std::function<void(json::object&)> edit;
  const char* expected_message;
};

TEST(GatewayConfig, InvalidFieldsAreNamed) {
  const BadConfigCase cases[] = {
      {"unknown field", [](json::object& c) { c["thread"] = 2; }, "thread: is not a known field"},
      {"threads range", [](json::object& c) { c["threads"] = 0; },
       "threads: must be an integer from 1 to 64"},
      {"listen form", [](json::object& c) { c["listen"] = "localhost"; }, "listen: must be"},
      {"size form", [](json::object& c) { c["limits"].as_object()["max_body_bytes"] = "lots"; },
       "limits.max_body_bytes: must be a size"},
      {"duplicate key",
       [](json::object& c) {
         c["tenants"].as_array()[1].as_object()["api_keys"] = json::array{kAcmeKey};
       },
       "tenants[1].api_keys[0]: repeats an API key"},
      {"tenant name",
       [](json::object& c) { c["tenants"].as_array()[0].as_object()["name"] = "a b"; },
       "tenants[0].name: must be 1 to 63 characters"},
      {"limits order",
       [](json::object& c) {
         auto& tenant = c["tenants"].as_array()[0].as_object();
         tenant["soft_limit"] = "2m";
         tenant["hard_limit"] = "1m";
       },
       "tenants[0].hard_limit: must be 0 (none) or at least soft_limit"},
      {"upstream form",
       [](json::object& c) {
         c["models"].as_array()[0].as_object()["upstreams"] = json::array{"127.0.0.1"};
       },
       "models[0].upstreams[0]: must be \"HOST:PORT\""},
      {"no models", [](json::object& c) { c.erase("models"); }, "models: is required"},
      {"hook type", [](json::object& c) { c["hooks"] = json::object{{"scopes", "yes"}}; },
       "hooks.scopes: must be true or false"},
  };
  for (const BadConfigCase& c : cases) {
    json::object config = BaseConfig({"127.0.0.1:9"});
    c.edit(config);
    TempDir dir("memward-gateway-config");
    integration::write_text_file(dir / "config.json", json::serialize(config));
    ProcessOptions options;
    options.argv = {GATEWAY_PATH, "--config", (dir / "config.json").string()};
    integration::RunResult result = integration::run_program(std::move(options), seconds(10));
    EXPECT_TRUE(result.exited_with(2)) << c.name << ": " << result.description;
    EXPECT_NE(result.stderr_text.find(c.expected_message), std::string::npos)
        << c.name << ": " << result.stderr_text;
  }
}

}  // namespace
}  // namespace memward::gateway_test
