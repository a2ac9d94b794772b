#include "server.h"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <thread>

#include "http_util.h"

namespace memward::gateway {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// How often the drain checks whether every connection has closed.
constexpr Milliseconds kDrainPollInterval{50};

// The maximum wait between two scans for unused cache entries, so an entry
// outlives cache_unused_after by at most this much.
constexpr Milliseconds kMaxCacheScanInterval{1000};

}  // namespace

Server::Server(const Config& config)
    : config_(config),
      hooks_(config.hooks, config.tenants),
      upstreams_(config),
      cache_(config.cache),
      access_log_(config.access_log),
      services_{config, hooks_, upstreams_, cache_, metrics_, access_log_, {}} {
  for (std::size_t i = 0; i < config.tenants.size(); ++i) {
    for (const std::string& key : config.tenants[i].api_keys) {
      services_.tenant_by_api_key.emplace(key, i);
    }
  }
  if (cache_.enabled() && hooks_.loaded() && config.hooks.cache_reclaimer) {
    cache_.RegisterReclaimer();
  }
  for (int i = 0; i < config.threads; ++i) {
    workers_.push_back(std::make_unique<Worker>(services_, config.upstream.max_idle_connections));
  }
}

Server::~Server() = default;

tcp::endpoint Server::Bind() {
  acceptor_ = std::make_unique<tcp::acceptor>(workers_[0]->io);
  acceptor_->open(config_.listen.protocol());
  acceptor_->set_option(asio::socket_base::reuse_address(true));
  acceptor_->bind(config_.listen);
  acceptor_->listen(asio::socket_base::max_listen_connections);
  return acceptor_->local_endpoint();
}

void Server::StartConnection(tcp::socket socket, Worker& worker) {
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  worker.connections.push_front(std::make_shared<Connection>(std::move(socket)));
  asio::co_spawn(worker.io, ServeConnection(worker, worker.connections.begin()), asio::detached);
}

asio::awaitable<void> Server::AcceptLoop() {
  while (!services_.draining.load()) {
    Worker& worker = *workers_[next_worker_];
    next_worker_ = (next_worker_ + 1) % workers_.size();
    auto [error, socket] = co_await acceptor_->async_accept(worker.io, kNoThrow);
    if (error == asio::error::operation_aborted || services_.draining.load()) break;
    if (error) {
      // Out of descriptors or a connection reset before accept: keep going.
      std::fprintf(stderr, "memward-gateway: accepting a connection failed: %s\n",
                   error.message().c_str());
      continue;
    }
    asio::post(worker.io, [this, &worker, socket = std::move(socket)]() mutable {
      StartConnection(std::move(socket), worker);
    });
  }
}

asio::awaitable<void> Server::IdlePurgeLoop() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::uint64_t seen_epoch = services_.activity_epoch.load();
  std::uint64_t purged_epoch = seen_epoch;
  for (;;) {
    timer.expires_after(config_.hooks.idle_purge_after);
    auto [error] = co_await timer.async_wait(kNoThrow);
    if (error) co_return;
    std::uint64_t epoch = services_.activity_epoch.load();
    bool idle = epoch == seen_epoch && metrics_.open_requests.load() == 0;
    seen_epoch = epoch;
    // One purge per idle period: nothing has run since the last one.
    if (idle && epoch != purged_epoch) {
      hooks_.Purge();
      purged_epoch = epoch;
      metrics_.idle_purges.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

asio::awaitable<void> Server::CacheUnusedLoop() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  const Milliseconds unused_after = config_.hooks.cache_unused_after;
  for (;;) {
    timer.expires_after(std::min(unused_after, kMaxCacheScanInterval));
    auto [error] = co_await timer.async_wait(kNoThrow);
    if (error) co_return;
    // The dropped bodies would otherwise stay resident as free pages until
    // the allocator returns them on its own (jemalloc's decay, glibc's trim).
    if (cache_.ReclaimUnused(unused_after) > 0) {
      hooks_.Purge();
      metrics_.cache_purges.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void Server::CloseConnections(bool force) {
  for (auto& worker : workers_) {
    asio::post(worker->io, [worker = worker.get(), force] {
      for (const std::shared_ptr<Connection>& connection : worker->connections) {
        if (!force && !connection->idle) continue;
        connection->force_closed = true;
        boost::system::error_code ignored;
        connection->client.socket().close(ignored);
        if (connection->upstream != nullptr) connection->upstream->socket().close(ignored);
      }
      if (force) worker->pool.Clear();
    });
  }
}

asio::awaitable<void> Server::DrainAndStop() {
  std::fprintf(stderr,
               "memward-gateway: shutting down: no new connections; waiting up to %lld ms for %lld "
               "open ones\n",
               static_cast<long long>(config_.limits.shutdown_drain.count()),
               static_cast<long long>(metrics_.open_connections.load()));
  services_.draining.store(true);
  boost::system::error_code ignored;
  acceptor_->close(ignored);
  health_stop_.emit(asio::cancellation_type::all);
  purge_stop_.emit(asio::cancellation_type::all);
  cache_stop_.emit(asio::cancellation_type::all);
  CloseConnections(false);

  asio::steady_timer timer(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + config_.limits.shutdown_drain;
  while (metrics_.open_connections.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    // Connections that finished a request since the last pass are idle now.
    CloseConnections(false);
    timer.expires_after(kDrainPollInterval);
    co_await timer.async_wait(kNoThrow);
  }
  if (metrics_.open_connections.load() > 0) {
    std::fprintf(stderr, "memward-gateway: drain time is over; closing %lld open connections\n",
                 static_cast<long long>(metrics_.open_connections.load()));
  }
  CloseConnections(true);
}

void SetStopSignalsBlocked(bool blocked) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &stop_signals, nullptr);
}

void Server::Run() {
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& worker : workers_) guards.push_back(asio::make_work_guard(worker->io));

  Worker& main = *workers_[0];
  asio::co_spawn(main.io, AcceptLoop(), asio::detached);
  auto stopped = std::make_shared<std::atomic<bool>>(false);
  asio::co_spawn(main.io, RunHealthChecks(upstreams_, stopped),
                 asio::bind_cancellation_slot(health_stop_.slot(), asio::detached));
  if (config_.hooks.idle_purge) {
    asio::co_spawn(main.io, IdlePurgeLoop(),
                   asio::bind_cancellation_slot(purge_stop_.slot(), asio::detached));
  }

  if (cache_.enabled() && config_.hooks.cache_reclaimer &&
      config_.hooks.cache_unused_after.count() > 0) {
    asio::co_spawn(main.io, CacheUnusedLoop(),
                   asio::bind_cancellation_slot(cache_stop_.slot(), asio::detached));
  }

  asio::signal_set signals(main.io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& error, int signal_number) {
    if (error) return;
    std::fprintf(stderr, "memward-gateway: received %s\n", strsignal(signal_number));
    stopped->store(true);
    asio::co_spawn(main.io, DrainAndStop(), [&](std::exception_ptr) {
      // Every connection is closed: let each event loop end when its last
      // handler has run.
      guards.clear();
    });
  });
  SetStopSignalsBlocked(false);

  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    threads.emplace_back([worker = workers_[i].get()] { worker->io.run(); });
  }
  main.io.run();
  for (std::thread& thread : threads) thread.join();
  std::fprintf(stderr, "memward-gateway: stopped\n");
}

}  // namespace memward::gateway
