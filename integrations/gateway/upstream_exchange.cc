// Forwarding one completion request upstream and passing the response back.
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <cerrno>
#include <optional>

#include "http_util.h"
#include "request_state.h"

namespace memward::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;

// The maximum body bytes one read from the upstream returns, and so the
// largest piece a streamed response is passed on in. A read returns as
// soon as any body bytes arrive, so smaller pieces go out without waiting.
constexpr std::size_t kRelayBufferBytes = 16 << 10;

using UpstreamParser = http::response_parser<http::buffer_body>;

// Watches the client connection while the upstream request runs: when the
// client closes it, closes the upstream connection, which cancels the
// upstream request. Stops when `generation` moves on or the wait is
// cancelled.
asio::awaitable<void> WatchForDisconnect(std::shared_ptr<Connection> connection,
                                         std::uint64_t generation) {
  auto [error] = co_await connection->client.socket().async_wait(
      asio::ip::tcp::socket::wait_read, kNoThrow);
  if (error || connection->watch_generation != generation) co_return;
  char byte;
  ssize_t received =
      ::recv(connection->client.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // Data means a pipelined request, not a disconnect; it stays unread.
  bool closed = received == 0 || (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  if (!closed) co_return;
  connection->client_gone = true;
  if (connection->upstream != nullptr) {
    boost::system::error_code ignored;
    connection->upstream->socket().close(ignored);
  }
}

// Starts and stops the watcher around the upstream phase of a request.
class DisconnectWatch {
 public:
  explicit DisconnectWatch(std::shared_ptr<Connection> connection)
      : connection_(std::move(connection)) {
    asio::co_spawn(connection_->client.get_executor(),
                   WatchForDisconnect(connection_, connection_->watch_generation), asio::detached);
  }
  ~DisconnectWatch() {
    ++connection_->watch_generation;
    connection_->upstream = nullptr;
    boost::system::error_code ignored;
    connection_->client.socket().cancel(ignored);
  }
  DisconnectWatch(const DisconnectWatch&) = delete;
  DisconnectWatch& operator=(const DisconnectWatch&) = delete;

 private:
  std::shared_ptr<Connection> connection_;
};

bool IsTimeout(const boost::system::error_code& error) { return error == beast::error::timeout; }

// True when a failure on a reused idle connection means the upstream closed
// it while idle, so the request may be sent again on a new connection.
bool IsStaleConnectionError(const boost::system::error_code& error) {
  return error == http::error::end_of_stream || error == asio::error::connection_reset ||
         error == asio::error::broken_pipe || error == asio::error::eof;
}

struct UpstreamResult {
  std::unique_ptr<beast::tcp_stream> stream;
  EndpointHealth* endpoint = nullptr;
  std::optional<ApiError> error;
  std::string_view error_text;
};

// Sends the request and reads the response headers into `parser`, on an
// idle connection when there is one. Retries once on a new connection when
// a reused one turns out closed, and once on another endpoint when a
// connection cannot be made.
asio::awaitable<UpstreamResult> SendRequest(Exchange& exchange,
                                            http::request<http::string_body>& request,
                                            beast::flat_buffer& buffer,
                                            std::optional<UpstreamParser>& parser) {
  Services& services = exchange.worker.services;
  const Config& config = services.config;
  UpstreamResult result;
  result.endpoint = services.upstreams.PickEndpoint(exchange.route);
  bool fresh_only = false;
  bool connect_failed = false;
  for (int attempt = 0; attempt < 3 && result.endpoint != nullptr; ++attempt) {
    EndpointHealth& endpoint = *result.endpoint;
    result.stream = fresh_only ? nullptr : exchange.worker.pool.TakeIdle(endpoint);
    const bool reused = result.stream != nullptr;
    if (!reused) {
      boost::system::error_code connect_error;
      result.stream = co_await ConnectUpstream(endpoint, config.limits.upstream_connect_timeout,
                                               config.upstream.unhealthy_after, connect_error);
      if (!result.stream) {
        connect_failed = true;
        services.metrics.upstream_errors.fetch_add(1, std::memory_order_relaxed);
        result.endpoint = services.upstreams.PickEndpoint(exchange.route, &endpoint);
        if (result.endpoint == &endpoint) result.endpoint = nullptr;
        continue;
      }
    }
    exchange.connection->upstream = result.stream.get();
    exchange.record.upstream = endpoint.config().label;
    request.set(http::field::host, endpoint.config().label);

    result.stream->expires_after(config.limits.upstream_header_timeout);
    auto [write_error, written] = co_await http::async_write(*result.stream, request, kNoThrow);
    boost::system::error_code error = write_error;
    if (!error) {
      parser.emplace();
      parser->body_limit(boost::none);
      auto [read_error, read] =
          co_await http::async_read_header(*result.stream, buffer, *parser, kNoThrow);
      error = read_error;
    }
    if (!error) {
      endpoint.RecordSuccess();
      co_return result;
    }
    exchange.connection->upstream = nullptr;
    result.stream.reset();
    if (exchange.connection->client_gone) co_return result;
    if (reused && IsStaleConnectionError(error)) {
      fresh_only = true;
      buffer.clear();
      continue;
    }
    if (IsTimeout(error)) {
      services.metrics.upstream_timeouts.fetch_add(1, std::memory_order_relaxed);
      result.error = ApiError{504, "server_error", "upstream_timeout",
                              "the upstream sent no response headers within " +
                                  std::to_string(config.limits.upstream_header_timeout.count()) +
                                  " ms",
                              {}};
      result.error_text = "upstream timed out before its headers";
    } else {
      services.metrics.upstream_errors.fetch_add(1, std::memory_order_relaxed);
      result.error = ApiError{502, "server_error", "upstream_error",
                              "the upstream failed: " + error.message(), {}};
      result.error_text = "upstream failed before its headers";
    }
    co_return result;
  }
  if (!result.error.has_value() && !connect_failed) {
    result.error = ApiError{503, "server_error", "upstream_unavailable",
                            "no upstream of the model is healthy", {}};
    result.error_text = "no healthy upstream";
  } else if (!result.error.has_value()) {
    result.error = ApiError{502, "server_error", "upstream_unreachable",
                            "no upstream of the model could be connected to", {}};
    result.error_text = "upstream connection failed";
  }
  co_return result;
}

bool EndsWithDone(std::string_view events) {
  while (!events.empty() && (events.back() == '\n' || events.back() == '\r')) {
    events.remove_suffix(1);
  }
  return events.ends_with("data: [DONE]");
}

// Stores a copy of a finished response in the cache. The copy is made in
// the tenant's scope, outside the request: cache entries kept in request
// arenas would keep each arena from emptying when its request ends, and
// measured about 10 MiB more resident memory over 1,200 requests.
bool FillCache(Exchange& exchange, std::string_view content_type, std::string_view body) {
  ResponseCache& cache = exchange.worker.services.cache;
  if (exchange.cache_key.empty() || body.size() > cache.max_entry_bytes()) return false;
  bool stored = false;
  {
    auto scope = exchange.memory.EnterTenant();
    auto entry = std::make_shared<const CachedResponse>(
        CachedResponse{std::string(content_type), std::string(body)});
    stored = cache.Insert(std::string(exchange.cache_key), std::move(entry));
  }
  exchange.record.cache_filled = stored;
  if (stored) exchange.record.cache = "fill";
  return stored;
}

// Writes the headers of a streamed response; its body follows in chunks.
asio::awaitable<bool> StartStream(Exchange& exchange, std::string_view content_type) {
  const Config& config = exchange.worker.services.config;
  std::optional<http::response<http::empty_body>> head;
  {
    auto scope = exchange.memory.Enter();
    head.emplace(http::status::ok, 11);
    head->set(http::field::server, "memward-gateway");
    head->set(http::field::content_type,
              content_type.empty() ? std::string_view("text/event-stream") : content_type);
    head->set(http::field::cache_control, "no-cache");
    head->set("x-memward-cache", exchange.cache_key.empty() ? "off" : "miss");
    head->keep_alive(exchange.record.keep_alive);
    head->chunked(true);
  }
  http::response_serializer<http::empty_body> serializer(*head);
  exchange.connection->client.expires_after(config.limits.client_write_timeout);
  auto [error, written] =
      co_await http::async_write_header(exchange.connection->client, serializer, kNoThrow);
  co_return !error;
}

// Reads the upstream's body and passes it on: chunk by chunk for a streamed
// 200 response, whole for anything else.
asio::awaitable<void> RelayResponse(Exchange& exchange, UpstreamResult& sent,
                                    beast::flat_buffer& upstream_buffer, UpstreamParser& parser,
                                    char* chunk) {
  Services& services = exchange.worker.services;
  const Config& config = services.config;
  Connection& connection = *exchange.connection;
  RequestRecord& record = exchange.record;

  const int status = int(parser.get().result_int());
  const std::string_view content_type = parser.get()[http::field::content_type];
  const bool relay = exchange.stream && status == 200;
  bool collect = !relay || !exchange.cache_key.empty();
  const std::uint64_t collect_limit =
      relay ? services.cache.max_entry_bytes() : config.limits.max_response_bytes;
  std::string collected;

  bool client_failed = false;
  if (relay) {
    client_failed = !co_await StartStream(exchange, content_type);
    if (!client_failed) record.status = 200;
  }
  boost::system::error_code upstream_error;
  bool too_large = false;
  while (!client_failed && !parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = kRelayBufferBytes;
    sent.stream->expires_after(config.limits.upstream_read_timeout);
    // read_some, not read: with a buffer_body, async_read completes only
    // when the buffer is full or the message ends, which held streamed
    // events back until 16 KiB of them had arrived.
    auto [read_error, read] =
        co_await http::async_read_some(*sent.stream, upstream_buffer, parser, kNoThrow);
    if (read_error && read_error != http::error::need_buffer) {
      upstream_error = read_error;
      break;
    }
    const std::size_t got = kRelayBufferBytes - parser.get().body().size;
    if (got == 0) continue;
    record.response_bytes += got;
    if (collect) {
      auto scope = exchange.memory.Enter();
      if (collected.size() + got <= collect_limit) {
        collected.append(chunk, got);
      } else if (relay) {
        // Too large to cache: keep streaming, stop collecting.
        collect = false;
        std::string().swap(collected);
      } else {
        too_large = true;
        break;
      }
    }
    if (relay) {
      connection.client.expires_after(config.limits.client_write_timeout);
      // A named value, not a temporary inside the co_await expression (see
      // RespondWithError in proxy.cc for the GCC 12.2 fault).
      auto chunk_buffers = http::make_chunk(asio::buffer(chunk, got));
      auto [write_error, written] =
          co_await asio::async_write(connection.client, chunk_buffers, kNoThrow);
      client_failed = bool(write_error);
    }
  }

  const bool complete = parser.is_done() && !upstream_error && !client_failed && !too_large;
  if (complete && parser.keep_alive()) {
    exchange.worker.pool.Return(*sent.endpoint, std::move(sent.stream));
  }
  connection.upstream = nullptr;
  sent.stream.reset();

  if (connection.client_gone || client_failed) {
    record.status = 499;
    record.error = relay ? "client closed the connection during the stream; upstream request "
                           "cancelled"
                         : "client closed the connection while waiting for the upstream; "
                           "upstream request cancelled";
    record.keep_alive = false;
    co_return;
  }
  if (!complete) {
    if (IsTimeout(upstream_error)) {
      services.metrics.upstream_timeouts.fetch_add(1, std::memory_order_relaxed);
    } else {
      services.metrics.upstream_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }

  if (relay) {
    if (!complete) {
      // The client already has a 200. Closing the connection without the
      // last chunk marks the stream as incomplete.
      record.error = IsTimeout(upstream_error) ? "upstream timed out during the stream"
                                               : "upstream failed during the stream";
      record.keep_alive = false;
      co_return;
    }
    connection.client.expires_after(config.limits.client_write_timeout);
    auto last_chunk = http::make_chunk_last();
    auto [write_error, written] =
        co_await asio::async_write(connection.client, last_chunk, kNoThrow);
    if (write_error) {
      record.status = 499;
      record.error = "client closed the connection at the end of the stream";
      record.keep_alive = false;
      co_return;
    }
    if (collect && EndsWithDone(collected)) {
      FillCache(exchange, content_type.empty() ? "text/event-stream" : content_type, collected);
    }
    co_return;
  }

  std::optional<ApiError> failure;
  std::shared_ptr<const CachedResponse> entry;
  {
    auto scope = exchange.memory.Enter();
    if (too_large) {
      failure = ApiError{502, "server_error", "upstream_response_too_large",
                         "the upstream's response is larger than the limit of " +
                             std::to_string(config.limits.max_response_bytes) + " bytes",
                         {}};
    } else if (!complete && IsTimeout(upstream_error)) {
      failure = ApiError{504, "server_error", "upstream_timeout",
                         "the upstream's response stalled for more than " +
                             std::to_string(config.limits.upstream_read_timeout.count()) + " ms",
                         {}};
    } else if (!complete) {
      failure = ApiError{502, "server_error", "upstream_error",
                         "the upstream's response broke off: " + upstream_error.message(), {}};
    } else {
      entry = std::make_shared<CachedResponse>(CachedResponse{
          std::string(content_type.empty() ? "application/json" : content_type),
          std::move(collected)});
    }
  }
  if (failure.has_value()) {
    std::optional<StringResponse> response;
    {
      auto scope = exchange.memory.Enter();
      response.emplace(MakeErrorResponse(*failure, record.keep_alive,
                                         config.limits.retry_after_seconds));
    }
    record.status = failure->status;
    record.error = too_large ? "upstream response too large"
                             : (IsTimeout(upstream_error) ? "upstream timed out during the response"
                                                          : "upstream failed during the response");
    if (!co_await WriteMessage(connection.client, *response, config.limits.client_write_timeout)) {
      record.keep_alive = false;
    }
    co_return;
  }

  if (status == 200) FillCache(exchange, entry->content_type, entry->body);
  using SpanResponse = http::response<http::span_body<const char>>;
  std::optional<SpanResponse> response;
  {
    auto scope = exchange.memory.Enter();
    response.emplace(http::int_to_status(unsigned(status)), 11);
    response->set(http::field::server, "memward-gateway");
    response->set(http::field::content_type, entry->content_type);
    response->set("x-memward-cache", record.cache);
    response->body() = {entry->body.data(), entry->body.size()};
    response->keep_alive(record.keep_alive);
    response->prepare_payload();
  }
  record.status = status;
  if (status != 200) record.error = "upstream responded with an error status";
  if (!co_await WriteMessage(connection.client, *response, config.limits.client_write_timeout)) {
    record.status = 499;
    record.error = "client closed the connection during the response";
    record.keep_alive = false;
  }
}

}  // namespace

asio::awaitable<void> ForwardUpstream(Exchange& exchange, std::string_view path) {
  Services& services = exchange.worker.services;
  const Config& config = services.config;
  Connection& connection = *exchange.connection;
  RequestRecord& record = exchange.record;
  DisconnectWatch watch(exchange.connection);

  std::optional<http::request<http::string_body>> request;
  std::unique_ptr<char[]> relay_buffer;
  {
    auto scope = exchange.memory.Enter();
    request.emplace(http::verb::post, path, 11);
    request->set(http::field::content_type, "application/json");
    request->set(http::field::user_agent, "memward-gateway");
    if (!config.upstream.api_key.empty()) {
      request->set(http::field::authorization, "Bearer " + config.upstream.api_key);
    }
    if (exchange.stream) request->set(http::field::accept, "text/event-stream");
    request->keep_alive(true);
    request->body() = std::move(exchange.upstream_body);
    request->prepare_payload();
    relay_buffer = std::make_unique<char[]>(kRelayBufferBytes);
  }

  beast::flat_buffer upstream_buffer;
  std::optional<UpstreamParser> parser;
  UpstreamResult sent = co_await SendRequest(exchange, *request, upstream_buffer, parser);
  if (!sent.stream) {
    if (connection.client_gone) {
      record.status = 499;
      record.error = "client closed the connection while waiting for the upstream";
      record.keep_alive = false;
      co_return;
    }
    std::optional<StringResponse> response;
    {
      auto scope = exchange.memory.Enter();
      response.emplace(MakeErrorResponse(*sent.error, record.keep_alive,
                                         config.limits.retry_after_seconds));
    }
    record.status = sent.error->status;
    record.error = sent.error_text;
    if (!co_await WriteMessage(connection.client, *response, config.limits.client_write_timeout)) {
      record.keep_alive = false;
    }
    co_return;
  }

  co_await RelayResponse(exchange, sent, upstream_buffer, *parser, relay_buffer.get());
}

}  // namespace memward::gateway
