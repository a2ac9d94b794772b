#include "upstream.h"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <cerrno>

namespace memward::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// True when the peer has not closed the idle connection and sent nothing
// unexpected: a non-blocking peek finds no data and no end of stream.
bool IdleConnectionUsable(beast::tcp_stream& stream) {
  auto& socket = stream.socket();
  if (!socket.is_open()) return false;
  char byte;
  ssize_t received = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

void EndpointHealth::RecordSuccess() {
  consecutive_failures_.store(0, std::memory_order_relaxed);
  healthy_.store(true, std::memory_order_relaxed);
}

void EndpointHealth::RecordFailure(int unhealthy_after) {
  failures_total_.fetch_add(1, std::memory_order_relaxed);
  int failures = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures >= unhealthy_after) healthy_.store(false, std::memory_order_relaxed);
}

UpstreamRegistry::UpstreamRegistry(const Config& config) : config_(config) {
  for (const EndpointConfig& endpoint : config.endpoints) {
    endpoints_.push_back(std::make_unique<EndpointHealth>(endpoint));
  }
  for (const ModelConfig& model : config.models) {
    auto route = std::make_unique<ModelRoute>();
    route->config = &model;
    for (std::size_t index : model.endpoints) route->endpoints.push_back(endpoints_[index].get());
    models_.emplace(model.name, std::move(route));
  }
}

ModelRoute* UpstreamRegistry::FindModel(std::string_view name) {
  auto found = models_.find(name);
  return found == models_.end() ? nullptr : found->second.get();
}

EndpointHealth* UpstreamRegistry::PickEndpoint(ModelRoute& route, const EndpointHealth* exclude) {
  const std::size_t count = route.endpoints.size();
  const std::size_t start = route.next.fetch_add(1, std::memory_order_relaxed);
  EndpointHealth* fallback = nullptr;
  for (std::size_t i = 0; i < count; ++i) {
    EndpointHealth* endpoint = route.endpoints[(start + i) % count];
    if (!endpoint->healthy()) continue;
    if (endpoint != exclude) return endpoint;
    fallback = endpoint;
  }
  return fallback;
}

std::size_t UpstreamRegistry::index_of(const EndpointHealth* endpoint) const {
  for (std::size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i].get() == endpoint) return i;
  }
  return endpoints_.size();
}

ConnectionPool::ConnectionPool(UpstreamRegistry& registry, std::size_t max_idle_per_endpoint)
    : registry_(registry), max_idle_(max_idle_per_endpoint), idle_(registry.endpoints().size()) {}

std::unique_ptr<beast::tcp_stream> ConnectionPool::TakeIdle(const EndpointHealth& endpoint) {
  auto& idle = idle_[registry_.index_of(&endpoint)];
  while (!idle.empty()) {
    std::unique_ptr<beast::tcp_stream> stream = std::move(idle.back());
    idle.pop_back();
    if (IdleConnectionUsable(*stream)) return stream;
  }
  return nullptr;
}

void ConnectionPool::Return(const EndpointHealth& endpoint,
                            std::unique_ptr<beast::tcp_stream> stream) {
  auto& idle = idle_[registry_.index_of(&endpoint)];
  if (idle.size() >= max_idle_ || !stream->socket().is_open()) return;
  stream->expires_never();
  idle.push_back(std::move(stream));
}

void ConnectionPool::Clear() {
  for (auto& idle : idle_) idle.clear();
}

asio::awaitable<std::unique_ptr<beast::tcp_stream>> ConnectUpstream(
    EndpointHealth& endpoint, Milliseconds timeout, int unhealthy_after,
    boost::system::error_code& error) {
  auto stream = std::make_unique<beast::tcp_stream>(co_await asio::this_coro::executor);
  stream->expires_after(timeout);
  auto [connect_error] = co_await stream->async_connect(endpoint.config().address, kNoThrow);
  error = connect_error;
  if (error) {
    if (unhealthy_after > 0) endpoint.RecordFailure(unhealthy_after);
    co_return nullptr;
  }
  stream->socket().set_option(asio::ip::tcp::no_delay(true));
  co_return stream;
}

namespace {

// One health check: GET the configured path on a fresh connection. Returns
// true for a 2xx response within the timeout.
asio::awaitable<bool> CheckEndpoint(EndpointHealth& endpoint, const UpstreamSettings& settings) {
  boost::system::error_code error;
  auto stream = co_await ConnectUpstream(endpoint, settings.health_check_timeout, 0, error);
  if (!stream) co_return false;
  stream->expires_after(settings.health_check_timeout);
  http::request<http::empty_body> request{http::verb::get, settings.health_check_path, 11};
  request.set(http::field::host, endpoint.config().label);
  request.set(http::field::connection, "close");
  if (!settings.api_key.empty()) {
    request.set(http::field::authorization, "Bearer " + settings.api_key);
  }
  auto [write_error, written] = co_await http::async_write(*stream, request, kNoThrow);
  if (write_error) co_return false;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  auto [read_error, read] = co_await http::async_read(*stream, buffer, parser, kNoThrow);
  if (read_error) co_return false;
  co_return parser.get().result_int() / 100 == 2;
}

}  // namespace

asio::awaitable<void> RunHealthChecks(UpstreamRegistry& registry,
                                      std::shared_ptr<std::atomic<bool>> stopped) {
  const UpstreamSettings& settings = registry.config().upstream;
  if (settings.health_check_interval.count() == 0) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!stopped->load()) {
    for (const auto& endpoint : registry.endpoints()) {
      if (stopped->load()) co_return;
      bool healthy = co_await CheckEndpoint(*endpoint, settings);
      if (healthy) {
        endpoint->RecordSuccess();
      } else {
        endpoint->RecordFailure(settings.unhealthy_after);
      }
    }
    timer.expires_after(settings.health_check_interval);
    auto [error] = co_await timer.async_wait(kNoThrow);
    if (error) co_return;
  }
}

}  // namespace memward::gateway
