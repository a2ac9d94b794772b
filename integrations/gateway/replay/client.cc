#include "client.h"

#include <algorithm>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace memward::gateway::replay {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view kDone = "data: [DONE]";
// Bytes of a non-200 body kept in the record.
constexpr std::size_t kErrorExcerptBytes = 300;

double MillisecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

http::request<http::string_body> MakeHttpRequest(const Target& target, const PlannedRequest& request,
                                                 const std::string& api_key) {
  http::request<http::string_body> message{http::verb::post, target.path, 11};
  message.set(http::field::host, target.endpoint.address().to_string());
  message.set(http::field::content_type, "application/json");
  message.set(http::field::user_agent, "memward-trace-replay");
  if (!api_key.empty()) message.set(http::field::authorization, "Bearer " + api_key);
  message.keep_alive(false);
  message.body() = ChatRequestBody(request, target.model);
  message.prepare_payload();
  return message;
}

}  // namespace

asio::awaitable<void> SendRequest(const Target& target, const PlannedRequest& request,
                                  const std::string& api_key, Clock::time_point replay_start,
                                  RequestRecord& record) {
  const Clock::time_point sent = Clock::now();
  record.sent_s = std::chrono::duration<double>(sent - replay_start).count();
  auto message = MakeHttpRequest(target, request, api_key);

  beast::tcp_stream stream(co_await asio::this_coro::executor);
  stream.expires_after(target.timeout);
  auto [connect_error] = co_await stream.async_connect(target.endpoint, kNoThrow);
  if (connect_error) {
    record.error = "connect failed: " + connect_error.message();
    co_return;
  }
  auto [write_error, written] = co_await http::async_write(stream, message, kNoThrow);
  if (write_error) {
    record.error = "sending the request failed: " + write_error.message();
    co_return;
  }

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  auto [header_error, header_bytes] = co_await http::async_read_header(stream, buffer, parser, kNoThrow);
  if (header_error) {
    record.error = "reading the response header failed: " + header_error.message();
    co_return;
  }
  record.header_ms = MillisecondsBetween(sent, Clock::now());
  record.status = parser.get().result_int();

  // Reads the body in pieces. `tail` keeps the last bytes seen, so the
  // "data: [DONE]" marker is found even when it spans two pieces.
  char piece[16 * 1024];
  std::string tail;
  std::string excerpt;
  while (!parser.is_done()) {
    auto& body = parser.get().body();
    body.data = piece;
    body.size = sizeof(piece);
    auto [read_error, read_bytes] = co_await http::async_read_some(stream, buffer, parser, kNoThrow);
    std::size_t got = sizeof(piece) - body.size;
    if (got > 0) {
      if (record.first_byte_ms < 0) record.first_byte_ms = MillisecondsBetween(sent, Clock::now());
      record.response_bytes += got;
      tail.append(piece, got);
      if (tail.size() > 64) tail.erase(0, tail.size() - 64);
      if (record.status != 200 && excerpt.size() < kErrorExcerptBytes) {
        excerpt.append(piece, std::min(got, kErrorExcerptBytes - excerpt.size()));
      }
      if (request.stream && record.status == 200 && tail.find(kDone) != std::string::npos) {
        record.complete = true;
      }
    }
    if (read_error && read_error != http::error::need_buffer) {
      record.error = "reading the response body failed after " +
                     std::to_string(record.response_bytes) + " bytes: " + read_error.message();
      break;
    }
  }
  record.latency_ms = MillisecondsBetween(sent, Clock::now());
  if (parser.is_done() && record.status == 200 && !request.stream) record.complete = true;
  if (record.status != 200 && record.error.empty()) record.error = excerpt;
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
}

}  // namespace memward::gateway::replay
