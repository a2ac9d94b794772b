// Upstream endpoints: health, round-robin choice per model, keep-alive
// connection pools and active health checks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config.h"

namespace memward::gateway {

// The health of one endpoint, shared by every I/O thread (atomics).
class EndpointHealth {
 public:
  explicit EndpointHealth(const EndpointConfig& config) : config_(config) {}

  const EndpointConfig& config() const { return config_; }
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }

  void RecordSuccess();
  // Marks the endpoint unhealthy after `unhealthy_after` failures in a row.
  void RecordFailure(int unhealthy_after);

  std::uint64_t failures_total() const { return failures_total_.load(std::memory_order_relaxed); }

 private:
  const EndpointConfig config_;
  std::atomic<bool> healthy_{true};
  std::atomic<int> consecutive_failures_{0};
  std::atomic<std::uint64_t> failures_total_{0};
};

struct ModelRoute {
  const ModelConfig* config = nullptr;
  std::vector<EndpointHealth*> endpoints;
  std::atomic<std::size_t> next{0};  // round-robin position
};

// Models and endpoints of the config. Immutable after construction except
// for the atomics inside, so every thread may use it.
class UpstreamRegistry {
 public:
  explicit UpstreamRegistry(const Config& config);

  // The route of a model, or null when the config has no such model.
  ModelRoute* FindModel(std::string_view name);

  // The next healthy endpoint of the route, round-robin, skipping
  // `exclude` when another one is healthy. Null when none is healthy.
  EndpointHealth* PickEndpoint(ModelRoute& route, const EndpointHealth* exclude = nullptr);

  std::size_t index_of(const EndpointHealth* endpoint) const;
  const std::vector<std::unique_ptr<EndpointHealth>>& endpoints() const { return endpoints_; }
  const Config& config() const { return config_; }

 private:
  const Config& config_;
  std::vector<std::unique_ptr<EndpointHealth>> endpoints_;
  std::unordered_map<std::string_view, std::unique_ptr<ModelRoute>> models_;
};

// Kept-alive upstream connections of one I/O thread. Not thread-safe: each
// thread has its own, and its connections belong to that thread's
// io_context.
class ConnectionPool {
 public:
  ConnectionPool(UpstreamRegistry& registry, std::size_t max_idle_per_endpoint);

  // An idle connection to the endpoint that the peer has not closed, or
  // null when there is none.
  std::unique_ptr<boost::beast::tcp_stream> TakeIdle(const EndpointHealth& endpoint);

  // Keeps a connection whose last response was read completely; closes it
  // when the endpoint already has max_idle_per_endpoint idle ones.
  void Return(const EndpointHealth& endpoint, std::unique_ptr<boost::beast::tcp_stream> stream);

  // Closes every idle connection (at shutdown).
  void Clear();

 private:
  UpstreamRegistry& registry_;
  std::size_t max_idle_;
  std::vector<std::vector<std::unique_ptr<boost::beast::tcp_stream>>> idle_;  // per endpoint
};

// Connects a new stream to the endpoint within the connect timeout. When the
// connection fails, records a failure on the endpoint unless
// `unhealthy_after` is 0 (the health check records its own result).
boost::asio::awaitable<std::unique_ptr<boost::beast::tcp_stream>> ConnectUpstream(
    EndpointHealth& endpoint, Milliseconds timeout, int unhealthy_after,
    boost::system::error_code& error);

// Runs active health checks of every endpoint until `stopped` is set or the
// io_context stops. Does nothing when the interval is 0.
boost::asio::awaitable<void> RunHealthChecks(UpstreamRegistry& registry,
                                             std::shared_ptr<std::atomic<bool>> stopped);

}  // namespace memward::gateway
