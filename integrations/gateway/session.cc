// One client connection: reading requests, routing them, and the small
// routes (/healthz, /metrics, /v1/models).
#include <boost/asio/as_tuple.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <cstdio>

#include "gateway_context.h"
#include "http_util.h"
#include "proxy.h"

namespace memward::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;

std::string ModelList(const Config& config) {
  boost::json::array data;
  for (const ModelConfig& model : config.models) {
    data.push_back(boost::json::object{
        {"id", model.name}, {"object", "model"}, {"created", 0}, {"owned_by", "memward-gateway"}});
  }
  return boost::json::serialize(boost::json::object{{"object", "list"}, {"data", std::move(data)}});
}

struct Route {
  std::string_view path;
  http::verb method;
};

constexpr Route kRoutes[] = {
    {"/v1/chat/completions", http::verb::post},
    {"/v1/completions", http::verb::post},
    {"/v1/models", http::verb::get},
    {"/healthz", http::verb::get},
    {"/metrics", http::verb::get},
};

// Responds to GET routes and to the errors found from the headers alone. The body,
// if any, is read and dropped first, so the connection stays usable.
asio::awaitable<bool> HandleSimple(Worker& worker, Connection& connection,
                                   ClientRequestParser& parser, beast::flat_buffer& buffer,
                                   std::string_view path, Clock::time_point start) {
  Services& services = worker.services;
  const Limits& limits = services.config.limits;
  bool keep_alive = parser.get().keep_alive() && !services.draining.load();
  if (!parser.is_done()) {
    connection.client.expires_after(limits.client_read_timeout);
    auto [error, read] = co_await http::async_read(connection.client, buffer, parser, kNoThrow);
    if (error) co_return false;
  }
  const http::verb method = parser.get().method();
  const Route* route = nullptr;
  for (const Route& candidate : kRoutes) {
    if (candidate.path == path) route = &candidate;
  }

  StringResponse response;
  if (route == nullptr) {
    response = MakeErrorResponse(
        ApiError{404, "invalid_request_error", "not_found",
                 "no route for " + std::string(path) + "; see integrations/gateway/README.md", {}},
        keep_alive, limits.retry_after_seconds);
  } else if (method != route->method) {
    response = MakeErrorResponse(
        ApiError{405, "invalid_request_error", "method_not_allowed",
                 std::string(path) + " accepts " + std::string(http::to_string(route->method)) +
                     " only",
                 {}},
        keep_alive, limits.retry_after_seconds);
    response.set(http::field::allow, http::to_string(route->method));
  } else if (path == "/healthz") {
    bool draining = services.draining.load();
    response = MakeResponse(draining ? http::status::service_unavailable : http::status::ok,
                            "application/json",
                            draining ? R"({"status":"draining"})" : R"({"status":"ok"})",
                            keep_alive);
  } else if (path == "/metrics") {
    response = MakeResponse(http::status::ok, "text/plain; version=0.0.4",
                            RenderMetrics(services.metrics, services.cache, services.upstreams),
                            keep_alive);
  } else if (!FindTenant(services, parser.get()[http::field::authorization]).has_value()) {
    response = MakeErrorResponse(
        ApiError{401, "authentication_error", "invalid_api_key",
                 "a valid API key is required: send \"Authorization: Bearer KEY\"", {}},
        keep_alive, limits.retry_after_seconds);
  } else {
    response = MakeResponse(http::status::ok, "application/json", ModelList(services.config),
                            keep_alive);
  }
  if (path != "/healthz" && path != "/metrics") {
    AccessRecord line;
    line.method = http::to_string(method);
    line.path = path;
    line.status = int(response.result_int());
    line.response_bytes = response.body().size();
    line.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    services.access_log.Write(line);
    services.metrics.CountResponse(line.status);
  }
  if (!co_await WriteMessage(connection.client, response, limits.client_write_timeout)) {
    co_return false;
  }
  co_return keep_alive;
}

// Responds to a request whose headers could not be read as HTTP.
asio::awaitable<void> RespondToBadHeaders(Worker& worker, Connection& connection,
                                       const boost::system::error_code& error) {
  const Limits& limits = worker.services.config.limits;
  ApiError api_error =
      error == http::error::header_limit
          ? ApiError{431, "invalid_request_error", "headers_too_large",
                     "the request headers are larger than the limit of " +
                         std::to_string(limits.max_header_bytes) + " bytes",
                     {}}
          : InvalidRequest("the request is not valid HTTP/1.1: " + error.message(), {},
                           "invalid_http");
  StringResponse response = MakeErrorResponse(api_error, false, limits.retry_after_seconds);
  worker.services.metrics.CountResponse(api_error.status);
  co_await WriteMessage(connection.client, response, limits.client_write_timeout);
}

// How long, and how many bytes, a closing connection keeps reading what the
// client still sends. Closing a socket with unread data makes the kernel
// send a reset, which can destroy the response before the client read it
// (for example an early 413 while the client still sends its body).
constexpr Milliseconds kLingerTime{1000};
constexpr std::size_t kLingerBytes = 1 << 20;

// Sends FIN, then reads and drops the client's data until it closes its side
// or the linger time or byte count runs out.
asio::awaitable<void> LingeringClose(Connection& connection) {
  boost::system::error_code ignored;
  connection.client.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  connection.client.expires_after(kLingerTime);
  std::size_t discarded = 0;
  char scratch[4096];
  while (discarded < kLingerBytes && !connection.force_closed) {
    auto [error, read] =
        co_await connection.client.async_read_some(asio::buffer(scratch), kNoThrow);
    if (error) break;
    discarded += read;
  }
  connection.client.socket().close(ignored);
}

bool IsDisconnect(const boost::system::error_code& error) {
  return error == http::error::end_of_stream || error == beast::error::timeout ||
         error == asio::error::operation_aborted || error == asio::error::eof ||
         error == asio::error::connection_reset || error == asio::error::bad_descriptor;
}

}  // namespace

asio::awaitable<void> ServeConnection(Worker& worker,
                                      std::list<std::shared_ptr<Connection>>::iterator it) {
  std::shared_ptr<Connection> connection = *it;
  Services& services = worker.services;
  const Limits& limits = services.config.limits;
  services.metrics.open_connections.fetch_add(1, std::memory_order_relaxed);
  beast::flat_buffer buffer;

  while (!services.draining.load() && !connection->force_closed) {
    connection->idle = true;
    ClientRequestParser parser;
    parser.header_limit(std::uint32_t(limits.max_header_bytes));
    // No body limit while reading the headers, so that a too large
    // Content-Length reaches the route, which responds with 413 and logs the
    // tenant. The limit applies from the body's first byte.
    parser.body_limit(boost::none);
    connection->client.expires_after(limits.client_idle_timeout);
    auto [error, read] =
        co_await http::async_read_header(connection->client, buffer, parser, kNoThrow);
    connection->idle = false;
    parser.body_limit(limits.max_body_bytes);
    if (error) {
      if (!IsDisconnect(error) && !connection->force_closed) {
        co_await RespondToBadHeaders(worker, *connection, error);
      }
      break;
    }
    const Clock::time_point start = Clock::now();
    services.metrics.requests.fetch_add(1, std::memory_order_relaxed);
    const std::string path(TargetPath(parser.get().target()));
    bool keep_alive = false;
    try {
      if (parser.get().method() == http::verb::post && path == "/v1/chat/completions") {
        keep_alive = co_await HandleCompletion(worker, connection, parser, buffer,
                                               CompletionKind::kChat, path, start);
      } else if (parser.get().method() == http::verb::post && path == "/v1/completions") {
        keep_alive = co_await HandleCompletion(worker, connection, parser, buffer,
                                               CompletionKind::kLegacy, path, start);
      } else {
        keep_alive = co_await HandleSimple(worker, *connection, parser, buffer, path, start);
      }
    } catch (const std::exception& error) {
      // One failed request closes its connection, never the gateway.
      std::fprintf(stderr, "memward-gateway: %s %s failed: %s; closing the connection\n",
                   std::string(http::to_string(parser.get().method())).c_str(), path.c_str(),
                   error.what());
      keep_alive = false;
    }
    if (!keep_alive) break;
  }

  if (connection->client.socket().is_open()) co_await LingeringClose(*connection);
  services.metrics.open_connections.fetch_sub(1, std::memory_order_relaxed);
  worker.connections.erase(it);
}

}  // namespace memward::gateway
