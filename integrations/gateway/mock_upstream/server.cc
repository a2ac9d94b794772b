#include "server.h"

#include <cctype>
#include <iostream>
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

namespace memward::gateway::mock {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

std::string LowerCase(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower;
}

// The request target without its query string.
std::string_view PathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// Waits until `deadline`; returns false if the wait was cancelled.
asio::awaitable<bool> SleepUntil(std::chrono::steady_clock::time_point deadline) {
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  auto [error] = co_await timer.async_wait(kNoThrow);
  co_return !error;
}

}  // namespace

Server::Server(asio::io_context& io, ServerOptions options)
    : io_(io), options_(std::move(options)), acceptor_(io) {
  tcp::endpoint endpoint(asio::ip::make_address(options_.address), options_.port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  port_ = acceptor_.local_endpoint().port();
}

void Server::Start() { asio::co_spawn(io_, Accept(), asio::detached); }

void Server::Stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

asio::awaitable<void> Server::Accept() {
  while (acceptor_.is_open()) {
    auto [error, socket] = co_await acceptor_.async_accept(kNoThrow);
    if (error == asio::error::operation_aborted) break;
    if (error) {
      // EMFILE and the like: report and keep accepting.
      std::cerr << "memward-mock-upstream: accept failed: " << error.message() << '\n';
      continue;
    }
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(socket.get_executor(), Serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> Server::Serve(tcp::socket socket) {
  Stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options_.max_body_bytes);
    auto [error, bytes] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    if (error == http::error::body_limit) {
      ++stats_.invalid_requests;
      const unsigned version = parser.get().version();
      const std::string body = BuildErrorBody(
          413, "the request body is larger than " + std::to_string(options_.max_body_bytes) +
                   " bytes");
      co_await SendJson(stream, version, /*keep_alive=*/false, 413, body);
      break;
    }
    if (error && error.category() == http::make_error_code(http::error::bad_target).category() &&
        error != http::error::end_of_stream && error != http::error::partial_message) {
      ++stats_.invalid_requests;
      const std::string body = BuildErrorBody(400, "malformed HTTP request: " + error.message());
      co_await SendJson(stream, 11, /*keep_alive=*/false, 400, body);
      break;
    }
    // End of stream or a reset: the client is gone, so no response is sent.
    if (error) break;
    ++stats_.requests;
    if (!co_await Handle(stream, parser.get())) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<bool> Server::Handle(Stream& stream, const Request& request) {
  std::string_view path = PathOf(request.target());
  bool keep_alive = request.keep_alive();
  if (request.method() == http::verb::post && path == "/v1/chat/completions") {
    co_return co_await HandleCompletion(stream, request, Endpoint::kChatCompletions);
  }
  if (request.method() == http::verb::post && path == "/v1/completions") {
    co_return co_await HandleCompletion(stream, request, Endpoint::kCompletions);
  }
  if (request.method() == http::verb::get && path == "/v1/models") {
    const std::string body = BuildModelList(options_.models);
    co_return co_await SendJson(stream, request.version(), keep_alive, 200, body);
  }
  if (request.method() == http::verb::get && (path == "/healthz" || path == "/health")) {
    const std::string body = R"({"status":"ok"})";
    co_return co_await SendJson(stream, request.version(), keep_alive, 200, body);
  }
  if (request.method() == http::verb::get && path == "/mock/stats") {
    const std::string body = StatsJson();
    co_return co_await SendJson(stream, request.version(), keep_alive, 200, body);
  }
  ++stats_.invalid_requests;
  const RequestError error{
      404, "no route for " + std::string(request.method_string()) + " " + std::string(path), ""};
  co_return co_await SendError(stream, request, error);
}

asio::awaitable<bool> Server::HandleCompletion(Stream& stream, const Request& request,
                                               Endpoint endpoint) {
  auto parsed = ParseCompletionRequest(endpoint, request.body());
  if (auto* error = std::get_if<RequestError>(&parsed)) {
    ++stats_.invalid_requests;
    co_return co_await SendError(stream, request, *error);
  }
  CompletionRequest& completion = std::get<CompletionRequest>(parsed);
  for (const auto& field : request) {
    std::string name = LowerCase(field.name_string());
    if (auto error = ApplyControlHeader(name, field.value(), completion.controls)) {
      ++stats_.invalid_requests;
      co_return co_await SendError(stream, request, *error);
    }
  }

  if (completion.controls.delay.count() > 0) {
    const auto delayed_until = std::chrono::steady_clock::now() + completion.controls.delay;
    co_await SleepUntil(delayed_until);
  }
  if (completion.controls.fail_status) {
    ++stats_.injected_failures;
    int status = *completion.controls.fail_status;
    const RequestError error{
        status, "mock upstream failure requested with status " + std::to_string(status), ""};
    co_return co_await SendError(stream, request, error);
  }
  if (completion.stream) co_return co_await SendStream(stream, request, completion);
  co_return co_await SendNonStreamed(stream, request, completion);
}

double Server::PaceOf(const CompletionRequest& completion) const {
  return completion.controls.tokens_per_second.value_or(options_.tokens_per_second);
}

asio::awaitable<bool> Server::SendNonStreamed(Stream& stream, const Request& request,
                                              const CompletionRequest& completion) {
  auto ready = std::chrono::steady_clock::now() + options_.first_token_delay;
  if (double pace = PaceOf(completion); pace > 0) {
    ready += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(completion.completion_tokens / pace));
  }
  co_await SleepUntil(ready);
  const ResponseIdentity identity = MakeIdentity(completion.endpoint, next_serial_++);
  const std::string body = BuildCompletionBody(completion, identity);
  // Counted before the write, as a stream is counted once its header is
  // out. A client that has read the whole body then reads a count that
  // includes it. Counted after the write, the gateway could forward the
  // body before this coroutine resumed, and a test that read the count at
  // once saw one less.
  ++stats_.completions;
  co_return co_await SendJson(stream, request.version(), request.keep_alive(), 200, body);
}

asio::awaitable<bool> Server::SendStream(Stream& stream, const Request& request,
                                         const CompletionRequest& completion) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point first_token_at = Clock::now() + options_.first_token_delay;
  co_await SleepUntil(first_token_at);

  http::response<http::empty_body> response{http::status::ok, request.version()};
  response.set(http::field::content_type, "text/event-stream");
  response.set(http::field::cache_control, "no-cache");
  response.keep_alive(request.keep_alive());
  response.chunked(true);
  http::response_serializer<http::empty_body> serializer{response};
  auto [header_error, header_bytes] = co_await http::async_write_header(stream, serializer, kNoThrow);
  if (header_error) {
    ++stats_.client_disconnects;
    co_return false;
  }

  ++stats_.open_streams;
  ++stats_.completions;
  ResponseIdentity identity = MakeIdentity(completion.endpoint, next_serial_++);
  bool delivered = true;
  std::string event;
  if (completion.endpoint == Endpoint::kChatCompletions) {
    event = BuildRoleChunk(completion, identity);
    delivered = co_await WriteEvent(stream, event);
  }
  const double pace = PaceOf(completion);
  const Clock::time_point start = Clock::now();
  for (std::uint32_t i = 0; delivered && i < completion.completion_tokens; ++i) {
    if (completion.controls.drop_after_tokens && i == *completion.controls.drop_after_tokens) {
      ++stats_.streams_dropped;
      --stats_.open_streams;
      boost::system::error_code ignored;
      stream.socket().close(ignored);
      co_return false;
    }
    if (pace > 0 && i > 0) {
      const Clock::time_point due = start + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(i / pace));
      co_await SleepUntil(due);
    }
    event = BuildTokenChunk(completion, identity, i);
    delivered = co_await WriteEvent(stream, event);
  }
  if (delivered) {
    event = BuildFinishChunk(completion, identity);
    delivered = co_await WriteEvent(stream, event);
  }
  if (delivered && completion.include_usage) {
    event = BuildUsageChunk(completion, identity);
    delivered = co_await WriteEvent(stream, event);
  }
  if (delivered) {
    event = kDoneEvent;
    delivered = co_await WriteEvent(stream, event);
  }
  if (delivered) {
    auto [error, written] = co_await asio::async_write(stream, http::make_chunk_last(), kNoThrow);
    delivered = !error;
  }
  --stats_.open_streams;
  if (!delivered) {
    // The peer closed or reset the connection: a gateway cancelled the
    // request. A write into a closed connection may succeed once before
    // the reset arrives, so this can count one token late.
    ++stats_.client_disconnects;
    co_return false;
  }
  ++stats_.streams_finished;
  co_return request.keep_alive();
}

asio::awaitable<bool> Server::WriteEvent(Stream& stream, const std::string& event) {
  auto [error, written] =
      co_await asio::async_write(stream, http::make_chunk(asio::buffer(event)), kNoThrow);
  co_return !error;
}

asio::awaitable<bool> Server::SendJson(Stream& stream, unsigned version, bool keep_alive,
                                       int status, const std::string& body) {
  http::response<http::string_body> response{static_cast<http::status>(status), version};
  response.set(http::field::content_type, "application/json");
  if (status == 429 || status == 503) response.set(http::field::retry_after, "1");
  response.keep_alive(keep_alive);
  response.body() = body;
  response.prepare_payload();
  auto [error, written] = co_await http::async_write(stream, response, kNoThrow);
  co_return !error && keep_alive;
}

asio::awaitable<bool> Server::SendError(Stream& stream, const Request& request,
                                        const RequestError& error) {
  const std::string body = BuildErrorBody(error.status, error.message, error.param);
  co_return co_await SendJson(stream, request.version(), request.keep_alive(), error.status, body);
}

std::string Server::StatsJson() const {
  namespace json = boost::json;
  auto load = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
  return json::serialize(json::object{
      {"requests", load(stats_.requests)},
      {"completions", load(stats_.completions)},
      {"streams_finished", load(stats_.streams_finished)},
      {"streams_dropped", load(stats_.streams_dropped)},
      {"client_disconnects", load(stats_.client_disconnects)},
      {"injected_failures", load(stats_.injected_failures)},
      {"invalid_requests", load(stats_.invalid_requests)},
      {"open_streams", load(stats_.open_streams)},
  });
}

}  // namespace memward::gateway::mock
