// The mock upstream's HTTP server: one coroutine per connection, keep-alive,
// streamed completions paced by a timer.
//
// NOTE: GCC 12 destroys some temporaries twice when they are arguments of a
// co_await'ed call (a braced RequestError crashed here), so every argument
// of a co_await'ed call in server.cc is a named variable.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "completion.h"

namespace memward::gateway::mock {

struct ServerOptions {
  std::string address = "127.0.0.1";
  // 0: the kernel picks a free port; Server::port() returns it.
  std::uint16_t port = 0;
  // Pace of generated tokens; 0 sends them as fast as the socket takes them.
  double tokens_per_second = 50;
  // Wait before the first token (streamed) or before the whole answer's
  // generation starts (not streamed): the prefill time of a model server.
  std::chrono::milliseconds first_token_delay{100};
  // Model ids listed by GET /v1/models, comma-separated. Requests for other
  // models are served too.
  std::string models = "mock-chat,mock-code";
  // Larger request bodies get 413.
  std::size_t max_body_bytes = 8u << 20;
};

// Counters served by GET /mock/stats, so tests can see what reached the
// upstream. Each is updated with relaxed atomics by the session coroutines.
struct ServerStats {
  std::atomic<std::uint64_t> requests{0};          // every parsed HTTP request
  std::atomic<std::uint64_t> completions{0};       // 200 replies, counted before the body is written
  std::atomic<std::uint64_t> streams_finished{0};  // streams that reached [DONE]
  std::atomic<std::uint64_t> streams_dropped{0};   // closed on purpose by drop-after-tokens
  std::atomic<std::uint64_t> client_disconnects{0};  // a write failed: the client went away
  std::atomic<std::uint64_t> injected_failures{0};   // failed on purpose with a requested status
  std::atomic<std::uint64_t> invalid_requests{0};    // rejected with 4xx as invalid
  std::atomic<std::int64_t> open_streams{0};         // streams being written now
};

class Server {
 public:
  // Binds and listens; throws boost::system::system_error when it cannot.
  Server(boost::asio::io_context& io, ServerOptions options);

  std::uint16_t port() const { return port_; }
  const ServerStats& stats() const { return stats_; }

  // Starts accepting connections on the io_context.
  void Start();
  // Stops accepting; open connections end when their coroutines do.
  void Stop();

 private:
  using Stream = boost::beast::tcp_stream;
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  boost::asio::awaitable<void> Accept();
  boost::asio::awaitable<void> Serve(boost::asio::ip::tcp::socket socket);
  // Serves one request; returns whether the connection stays open.
  boost::asio::awaitable<bool> Handle(Stream& stream, const Request& request);
  boost::asio::awaitable<bool> HandleCompletion(Stream& stream, const Request& request,
                                                Endpoint endpoint);
  boost::asio::awaitable<bool> SendNonStreamed(Stream& stream, const Request& request,
                                               const CompletionRequest& completion);
  boost::asio::awaitable<bool> SendStream(Stream& stream, const Request& request,
                                          const CompletionRequest& completion);
  // Writes one SSE event as one HTTP chunk; returns false when the client
  // has gone.
  boost::asio::awaitable<bool> WriteEvent(Stream& stream, const std::string& event);
  boost::asio::awaitable<bool> SendJson(Stream& stream, unsigned version, bool keep_alive,
                                        int status, const std::string& body);
  boost::asio::awaitable<bool> SendError(Stream& stream, const Request& request,
                                         const RequestError& error);

  std::string StatsJson() const;
  double PaceOf(const CompletionRequest& completion) const;

  boost::asio::io_context& io_;
  ServerOptions options_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  ServerStats stats_;
  std::atomic<std::uint64_t> next_serial_{1};
};

}  // namespace memward::gateway::mock
