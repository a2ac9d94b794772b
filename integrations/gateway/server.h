// The gateway process: I/O threads, the listener, health checks, idle
// purges and graceful shutdown.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <vector>

#include "gateway_context.h"

namespace memward::gateway {

// Blocks or unblocks SIGTERM and SIGINT on the calling thread. main() blocks
// them before start-up, and Server::Run unblocks them once its handler is
// installed, so a signal sent right after the "listening" line is held
// pending instead of killing the process before it can drain.
void SetStopSignalsBlocked(bool blocked);

class Server {
 public:
  // Sets up memward tenants, the cache and the access log. Throws
  // std::runtime_error when the access log cannot be opened.
  explicit Server(const Config& config);
  ~Server();

  // Binds the listening socket; returns the bound endpoint (the port the
  // kernel picked when the config asked for port 0). Throws
  // boost::system::system_error when the address cannot be bound.
  boost::asio::ip::tcp::endpoint Bind();

  // Serves until SIGTERM or SIGINT, then stops accepting, lets open requests
  // finish within limits.shutdown_drain and returns.
  void Run();

 private:
  boost::asio::awaitable<void> AcceptLoop();
  boost::asio::awaitable<void> IdlePurgeLoop();
  boost::asio::awaitable<void> CacheUnusedLoop();
  boost::asio::awaitable<void> DrainAndStop();
  void StartConnection(boost::asio::ip::tcp::socket socket, Worker& worker);
  // Closes idle connections, or all of them when `force` is set. Runs each
  // worker's part on that worker's thread.
  void CloseConnections(bool force);

  const Config& config_;
  MemwardHooks hooks_;
  UpstreamRegistry upstreams_;
  ResponseCache cache_;
  Metrics metrics_;
  AccessLog access_log_;
  Services services_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::size_t next_worker_ = 0;
  // Cancel the health-check, idle-purge and unused-cache loops at shutdown.
  boost::asio::cancellation_signal health_stop_;
  boost::asio::cancellation_signal purge_stop_;
  boost::asio::cancellation_signal cache_stop_;
};

}  // namespace memward::gateway
