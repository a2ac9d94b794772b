// State shared by the gateway's parts: the process-wide services and the
// per-thread workers, plus the per-connection state that shutdown and
// disconnect detection reach.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "access_log.h"
#include "config.h"
#include "memward_hooks.h"
#include "metrics.h"
#include "response_cache.h"
#include "upstream.h"

namespace memward::gateway {

// Process-wide services. Thread-safe: each member is immutable after
// start-up or guards itself.
struct Services {
  const Config& config;
  MemwardHooks& hooks;
  UpstreamRegistry& upstreams;
  ResponseCache& cache;
  Metrics& metrics;
  AccessLog& access_log;
  std::unordered_map<std::string, std::size_t> tenant_by_api_key;  // index into config.tenants
  std::atomic<bool> draining{false};
  // Incremented when a request ends; the idle purge runs when it has not
  // moved for a whole idle period.
  std::atomic<std::uint64_t> activity_epoch{0};
};

// One client connection. Owned by a shared_ptr so that the disconnect
// watcher and shutdown can reach it; used only on its worker's thread.
struct Connection {
  explicit Connection(boost::asio::ip::tcp::socket socket) : client(std::move(socket)) {}

  boost::beast::tcp_stream client;
  // The upstream connection of the request in flight, or null. Closed by the
  // disconnect watcher and by a forced shutdown to cancel the request.
  boost::beast::tcp_stream* upstream = nullptr;
  bool idle = true;         // waiting for the next request's headers
  bool client_gone = false;  // the watcher saw the client close
  bool force_closed = false;
  // Moves on when a request's disconnect watch ends, so that a late wake-up
  // of an old watcher does nothing.
  std::uint64_t watch_generation = 0;
};

// One I/O thread: its event loop, its upstream connections and its open
// client connections. Used only on its own thread, except that the
// constructor and destructor run on the main thread.
struct Worker {
  Worker(Services& services, std::size_t max_idle)
      : services(services), pool(services.upstreams, max_idle) {}

  Services& services;
  boost::asio::io_context io{1};
  ConnectionPool pool;
  std::list<std::shared_ptr<Connection>> connections;
};

// Serves one client connection until it closes, the gateway drains, or a
// request ends with "Connection: close".
boost::asio::awaitable<void> ServeConnection(Worker& worker,
                                             std::list<std::shared_ptr<Connection>>::iterator it);

}  // namespace memward::gateway
