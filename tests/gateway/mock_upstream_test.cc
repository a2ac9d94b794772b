// memward-mock-upstream run as a real server on 127.0.0.1: the OpenAI
// response shapes, streaming, the per-request controls and its counters.
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "harness/process.h"
#include "http_client.h"

namespace memward::gateway_test {
namespace {

namespace json = boost::json;
using integration::Process;
using integration::ProcessOptions;
using integration::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Starts the mock with the given flags and waits for its port file.
class MockUpstream {
 public:
  explicit MockUpstream(std::vector<std::string> flags) {
    ProcessOptions options;
    options.argv = {MOCK_UPSTREAM_PATH, "--port=0", "--port_file=" + (dir_ / "port").string()};
    options.argv.insert(options.argv.end(), flags.begin(), flags.end());
    process_.emplace(std::move(options));
    auto deadline = std::chrono::steady_clock::now() + seconds(10);
    while (!std::filesystem::exists(dir_ / "port")) {
      if (!process_->running() || std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("memward-mock-upstream did not start: " + process_->describe());
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    port_ = static_cast<std::uint16_t>(std::stoi(integration::read_text_file(dir_ / "port")));
  }

  std::uint16_t port() const { return port_; }
  Process& process() { return *process_; }

  json::object Stats() {
    return json::parse(Fetch(port_, "GET", "/mock/stats").body).as_object();
  }

 private:
  TempDir dir_{"memward-mock"};
  std::optional<Process> process_;
  std::uint16_t port_ = 0;
};

// No pacing, so the tests do not wait for tokens.
std::vector<std::string> FastFlags() {
  return {"--tokens_per_second=0", "--first_token_delay_ms=0"};
}

json::object ParseObject(const std::string& text) { return json::parse(text).as_object(); }

std::string ChatBody(std::string_view prompt, int max_tokens, bool stream) {
  json::object body{{"model", "mock-chat"},
                    {"messages", json::array{json::object{{"role", "user"}, {"content", prompt}}}},
                    {"max_tokens", max_tokens},
                    {"stream", stream}};
  if (stream) body["stream_options"] = json::object{{"include_usage", true}};
  return json::serialize(body);
}

std::size_t CountWords(std::string_view text) {
  std::size_t words = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = c == ' ';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

TEST(MockUpstream, ListsConfiguredModels) {
  MockUpstream mock({"--models=alpha,beta"});
  HttpReply reply = Fetch(mock.port(), "GET", "/v1/models");
  ASSERT_EQ(reply.status, 200) << reply.body;
  json::object list = ParseObject(reply.body);
  EXPECT_EQ(list.at("object").as_string(), "list");
  const json::array& data = list.at("data").as_array();
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[0].at("id").as_string(), "alpha");
  EXPECT_EQ(data[1].at("id").as_string(), "beta");
  EXPECT_EQ(data[1].at("object").as_string(), "model");
}

TEST(MockUpstream, ChatCompletionHasUsage) {
  MockUpstream mock(FastFlags());
  HttpReply reply = Fetch(mock.port(), "POST", "/v1/chat/completions",
                          ChatBody("one two three", 7, false));
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.headers["content-type"], "application/json");
  json::object body = ParseObject(reply.body);
  EXPECT_EQ(body.at("object").as_string(), "chat.completion");
  EXPECT_EQ(body.at("model").as_string(), "mock-chat");
  const json::object& choice = body.at("choices").as_array().at(0).as_object();
  EXPECT_EQ(choice.at("finish_reason").as_string(), "length");
  const json::object& message = choice.at("message").as_object();
  EXPECT_EQ(message.at("role").as_string(), "assistant");
  EXPECT_EQ(CountWords(message.at("content").as_string()), 7u);
  const json::object& usage = body.at("usage").as_object();
  EXPECT_EQ(usage.at("prompt_tokens").as_int64(), 3);
  EXPECT_EQ(usage.at("completion_tokens").as_int64(), 7);
  EXPECT_EQ(usage.at("total_tokens").as_int64(), 10);
}

TEST(MockUpstream, EqualRequestsGetEqualText) {
  MockUpstream mock(FastFlags());
  std::string request = ChatBody("same prompt", 12, false);
  HttpReply first = Fetch(mock.port(), "POST", "/v1/chat/completions", request);
  HttpReply second = Fetch(mock.port(), "POST", "/v1/chat/completions", request);
  auto content = [](const HttpReply& reply) {
    return std::string(ParseObject(reply.body)
                           .at("choices").as_array().at(0)
                           .at("message").at("content").as_string());
  };
  EXPECT_EQ(content(first), content(second));
}

TEST(MockUpstream, ChatStreamSendsChunkPerToken) {
  MockUpstream mock(FastFlags());
  HttpReply reply = Fetch(mock.port(), "POST", "/v1/chat/completions",
                          ChatBody("a b c d", 5, true));
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.headers["content-type"], "text/event-stream");
  EXPECT_EQ(reply.headers["transfer-encoding"], "chunked");
  std::vector<std::string> events = SseData(reply.body);
  // Role chunk, 5 token chunks, finish chunk, usage chunk, [DONE].
  ASSERT_EQ(events.size(), 9u) << reply.body;
  EXPECT_EQ(events.back(), "[DONE]");

  json::object role = ParseObject(events[0]);
  EXPECT_EQ(role.at("object").as_string(), "chat.completion.chunk");
  EXPECT_EQ(role.at("choices").at(0).at("delta").at("role").as_string(), "assistant");
  std::string text;
  for (int i = 1; i <= 5; ++i) {
    json::object chunk = ParseObject(events[i]);
    EXPECT_EQ(chunk.at("id"), role.at("id"));
    EXPECT_TRUE(chunk.at("choices").at(0).at("finish_reason").is_null());
    text += chunk.at("choices").at(0).at("delta").at("content").as_string();
  }
  EXPECT_EQ(CountWords(text), 5u);
  json::object finish = ParseObject(events[6]);
  EXPECT_EQ(finish.at("choices").at(0).at("finish_reason").as_string(), "length");
  json::object usage = ParseObject(events[7]);
  EXPECT_TRUE(usage.at("choices").as_array().empty());
  EXPECT_EQ(usage.at("usage").at("prompt_tokens").as_int64(), 4);
  EXPECT_EQ(usage.at("usage").at("completion_tokens").as_int64(), 5);

  json::object stats = mock.Stats();
  EXPECT_EQ(stats.at("streams_finished").as_int64(), 1);
}

TEST(MockUpstream, TextCompletionStreams) {
  MockUpstream mock(FastFlags());
  std::string request = R"({"model":"mock-code","prompt":["x y","z"],"max_tokens":3,"stream":true})";
  HttpReply reply = Fetch(mock.port(), "POST", "/v1/completions", request);
  ASSERT_EQ(reply.status, 200) << reply.body;
  std::vector<std::string> events = SseData(reply.body);
  // 3 token chunks, finish chunk, [DONE]: no role chunk and no usage chunk.
  ASSERT_EQ(events.size(), 5u) << reply.body;
  json::object token = ParseObject(events[0]);
  EXPECT_EQ(token.at("object").as_string(), "text_completion");
  EXPECT_FALSE(token.at("choices").at(0).at("text").as_string().empty());
  EXPECT_EQ(events[4], "[DONE]");

  HttpReply whole = Fetch(mock.port(), "POST", "/v1/completions",
                          R"({"model":"mock-code","prompt":["x y","z"],"max_tokens":3})");
  ASSERT_EQ(whole.status, 200) << whole.body;
  EXPECT_EQ(ParseObject(whole.body).at("usage").at("prompt_tokens").as_int64(), 3);
}

TEST(MockUpstream, FailHeaderSetsStatus) {
  MockUpstream mock(FastFlags());
  for (int status : {429, 500, 503}) {
    HttpReply reply = Fetch(mock.port(), "POST", "/v1/chat/completions", ChatBody("hi", 2, true),
                            {{"x-mock-fail", std::to_string(status)}});
    EXPECT_EQ(reply.status, status) << reply.body;
    json::object error = ParseObject(reply.body).at("error").as_object();
    EXPECT_NE(error.at("message").as_string().find(std::to_string(status)), std::string::npos);
    EXPECT_TRUE(error.contains("type"));
    if (status == 429 || status == 503) {
      EXPECT_EQ(reply.headers["retry-after"], "1");
    }
  }
  EXPECT_EQ(mock.Stats().at("injected_failures").as_int64(), 3);
}

TEST(MockUpstream, PromptControlSetsStatus) {
  MockUpstream mock(FastFlags());
  HttpReply reply = Fetch(mock.port(), "POST", "/v1/chat/completions",
                          ChatBody("please mock-fail=502 now", 2, false));
  EXPECT_EQ(reply.status, 502) << reply.body;
  EXPECT_EQ(ParseObject(reply.body).at("error").at("type").as_string(), "server_error");
}

TEST(MockUpstream, InvalidControlGets400) {
  MockUpstream mock(FastFlags());
  for (auto [name, value] : {std::pair{"x-mock-fail", "200"}, std::pair{"x-mock-delay-ms", "-1"},
                             std::pair{"x-mock-tokens-per-second", "fast"}}) {
    HttpReply reply = Fetch(mock.port(), "POST", "/v1/chat/completions",
                            ChatBody("hi", 2, false), {{name, value}});
    EXPECT_EQ(reply.status, 400) << name << ": " << reply.body;
    EXPECT_NE(reply.body.find("invalid mock control"), std::string::npos) << reply.body;
  }
}

TEST(MockUpstream, BadRequestsGetOpenAiErrors) {
  MockUpstream mock(FastFlags());
  struct Case {
    std::string body;
    std::string param;  // expected "param", or empty for null
  };
  const Case cases[] = {
      {R"({"model":"m","messages":[)", ""},
      {R"([1,2])", ""},
      {R"({"messages":[{"role":"user","content":"x"}]})", "model"},
      {R"({"model":"m","messages":[]})", "messages"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0})", "max_tokens"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"9"})", "max_tokens"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"})", "stream"},
  };
  for (const Case& c : cases) {
    HttpReply reply = Fetch(mock.port(), "POST", "/v1/chat/completions", c.body);
    EXPECT_EQ(reply.status, 400) << c.body << " -> " << reply.body;
    json::object error = ParseObject(reply.body).at("error").as_object();
    EXPECT_EQ(error.at("type").as_string(), "invalid_request_error") << c.body;
    if (c.param.empty()) {
      EXPECT_TRUE(error.at("param").is_null()) << c.body;
    } else {
      EXPECT_EQ(error.at("param").as_string(), c.param) << c.body;
    }
  }
  HttpReply unknown = Fetch(mock.port(), "GET", "/v2/nothing");
  EXPECT_EQ(unknown.status, 404) << unknown.body;
}

TEST(MockUpstream, OversizedBodyGets413) {
  MockUpstream mock({"--max_body_bytes=1024", "--tokens_per_second=0"});
  HttpReply reply = Fetch(mock.port(), "POST", "/v1/chat/completions",
                          ChatBody(std::string(4096, 'x'), 2, false));
  EXPECT_EQ(reply.status, 413) << reply.body;
  EXPECT_NE(reply.body.find("larger than 1024 bytes"), std::string::npos) << reply.body;
  // The server keeps serving.
  EXPECT_EQ(Fetch(mock.port(), "GET", "/healthz").status, 200);
}

TEST(MockUpstream, DropAfterTokensCutsStream) {
  MockUpstream mock(FastFlags());
  StreamReader reader(mock.port(), "/v1/chat/completions", ChatBody("hi", 50, true),
                      {{"x-mock-drop-after-tokens", "3"}});
  ASSERT_EQ(reader.status(), 200);
  std::string received;
  bool cut = false;
  try {
    while (auto chunk = reader.NextChunk()) received += *chunk;
  } catch (const boost::system::system_error&) {
    cut = true;
  }
  EXPECT_TRUE(cut) << "the stream ended cleanly: " << received;
  std::vector<std::string> events = SseData(received);
  EXPECT_EQ(events.size(), 4u) << received;  // role chunk and 3 tokens
  EXPECT_EQ(received.find("[DONE]"), std::string::npos);
  EXPECT_EQ(mock.Stats().at("streams_dropped").as_int64(), 1);
}

TEST(MockUpstream, CountsClientDisconnects) {
  MockUpstream mock({"--tokens_per_second=20", "--first_token_delay_ms=0"});
  {
    StreamReader reader(mock.port(), "/v1/chat/completions", ChatBody("hi", 400, true));
    ASSERT_EQ(reader.status(), 200);
    ASSERT_TRUE(reader.NextChunk().has_value());
    reader.Abort();
  }
  // The mock notices at its next write, 50 ms later at 20 tokens/s.
  auto deadline = std::chrono::steady_clock::now() + seconds(10);
  json::object stats = mock.Stats();
  while (stats.at("client_disconnects").as_int64() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
    stats = mock.Stats();
  }
  EXPECT_EQ(stats.at("client_disconnects").as_int64(), 1) << json::serialize(stats);
  EXPECT_EQ(stats.at("open_streams").as_int64(), 0) << json::serialize(stats);
  EXPECT_EQ(stats.at("streams_finished").as_int64(), 0) << json::serialize(stats);
}

TEST(MockUpstream, StopsOnSigterm) {
  MockUpstream mock(FastFlags());
  mock.process().send_signal(SIGTERM);
  std::optional<int> status = mock.process().wait_for_exit(seconds(10));
  ASSERT_TRUE(status.has_value()) << "still running 10 s after SIGTERM";
  ASSERT_TRUE(WIFEXITED(*status)) << integration::describe_wait_status(*status);
  EXPECT_EQ(WEXITSTATUS(*status), 0);
}

TEST(MockUpstream, InvalidFlagExitsWithUsage) {
  ProcessOptions options;
  options.argv = {MOCK_UPSTREAM_PATH, "--tokens_per_second=-2"};
  integration::RunResult result = integration::run_program(std::move(options), seconds(10));
  EXPECT_TRUE(result.exited_with(2)) << result.description;
  EXPECT_NE(result.stderr_text.find("--tokens_per_second must be a number >= 0"), std::string::npos)
      << result.stderr_text;
}

}  // namespace
}  // namespace memward::gateway_test
