#include "accounting/admin_server.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <new>

#include "accounting/admin_socket.h"
#include "base/log.h"
#include "base/mutex_lock.h"

namespace memward::accounting {
namespace {

// epoll user data for the descriptors that are not connections; a
// connection's data is its address, which is never this small.
constexpr uint64_t kUnixListenerTag = 1;
constexpr uint64_t kTcpListenerTag = 2;
constexpr uint64_t kTimerTag = 3;

constexpr int kMaxEventsPerWait = 64;
constexpr int kMaxAcceptsPerEvent = 64;
constexpr size_t kReadChunk = 16 * 1024;
// How long a closed connection may keep sending before it is dropped; the
// drain lets the client read an error response instead of a reset.
constexpr int64_t kLingerNs = 500 * 1000 * 1000;

base::LogLimit g_log_limit(8);

// Guards every server's connections_ and each connection's fd: an accepted
// descriptor is in connections_ before the lock is released, and a closed
// one is -1 before it is. The fork handler takes it before every other
// memward lock, so a child never inherits a descriptor half accepted or half
// closed. Endpoints run without it. One lock for all servers: a process runs
// one, and only unit tests run more.
constinit pthread_mutex_t g_connections_lock = PTHREAD_MUTEX_INITIALIZER;


int64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

bool AddToEpoll(int epoll_fd, int fd, uint32_t events, uint64_t data) {
  epoll_event event = {};
  event.events = events;
  event.data.u64 = data;
  return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

void ModifyEpoll(int epoll_fd, int fd, uint32_t events, uint64_t data) {
  epoll_event event = {};
  event.events = events;
  event.data.u64 = data;
  epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &event);
}

// Writes a complete error response to a connection that the server does not
// keep (over capacity); a full socket buffer just loses it.
void SendAndClose(int fd, int status, const char* message) {
  AdminResponse response;
  response.SetError(status, message);
  std::string text = FormatHttpResponse(response);
  [[maybe_unused]] ssize_t written = send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  close(fd);
}

}  // namespace

struct AdminServer::Connection {
  enum class State { kReading, kWriting, kLingering };

  int fd = -1;
  bool tcp = false;
  State state = State::kReading;
  std::string input;
  std::string output;
  size_t written = 0;
  int64_t deadline_ns = 0;
};

AdminServer::AdminServer() = default;

AdminServer::~AdminServer() { Close(false); }

bool AdminServer::Open(const AdminServerOptions& options, std::string* error) {
  Close(false);
  open_errno_ = 0;
  options_ = options;
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (epoll_fd_ < 0 || timer_fd_ < 0 || !AddToEpoll(epoll_fd_, timer_fd_, EPOLLIN, kTimerTag)) {
    open_errno_ = errno;
    *error = std::string("cannot create the admin server's epoll set or timer: ") +
             strerror(errno);
    Close(false);
    return false;
  }
  if (!options_.socket_path.empty() && !OpenUnixListener(error)) {
    Close(false);
    return false;
  }
  if (options_.tcp_port != 0 && !OpenTcpListener(error)) {
    Close(true);
    return false;
  }
  return true;
}

bool AdminServer::OpenUnixListener(std::string* error) {
  UnixListener listener;
  if (!accounting::OpenUnixListener(options_.socket_path, &listener, error)) return false;
  unix_fd_ = listener.fd;
  socket_device_ = listener.device;
  socket_inode_ = listener.inode;
  if (!AddToEpoll(epoll_fd_, unix_fd_, EPOLLIN, kUnixListenerTag)) {
    *error = std::string("epoll rejected the admin socket: ") + strerror(errno);
    return false;
  }
  return true;
}

bool AdminServer::OpenTcpListener(std::string* error) {
  int port = options_.tcp_port < 0 ? 0 : options_.tcp_port;
  tcp_fd_ = accounting::OpenTcpListener(port, options_.tcp_any_address, &bound_tcp_port_, error);
  if (tcp_fd_ < 0) return false;
  if (!AddToEpoll(epoll_fd_, tcp_fd_, EPOLLIN, kTcpListenerTag)) {
    *error = std::string("epoll rejected the metrics port: ") + strerror(errno);
    return false;
  }
  return true;
}

void AdminServer::Close(bool unlink_socket) {
  {
    base::MutexLock lock(&g_connections_lock);
    for (auto& connection : connections_) {
      if (connection->fd >= 0) close(connection->fd);
    }
    connections_.clear();
  }
  CloseListeners(unlink_socket);
}

void AdminServer::CloseInForkedChild() {
  {
    base::MutexLock lock(&g_connections_lock);
    for (auto& connection : connections_) {
      if (connection->fd >= 0) close(connection->fd);
      // The parent's warden may have been changing this connection's
      // buffers at fork; freeing them could free a block twice.
      [[maybe_unused]] Connection* abandoned = connection.release();
    }
    // The table's own block is leaked for the same reason: a new vector
    // constructed in place replaces the old one without freeing its block.
    new (&connections_) std::vector<std::unique_ptr<Connection>>();
  }
  CloseListeners(/*unlink_socket=*/false);
}

void AdminServer::CloseListeners(bool unlink_socket) {
  if (unix_fd_ >= 0) {
    close(unix_fd_);
    if (unlink_socket) RemoveSocketFile(options_.socket_path, socket_device_, socket_inode_);
  }
  for (int* fd : {&tcp_fd_, &timer_fd_, &epoll_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  unix_fd_ = -1;
  bound_tcp_port_ = 0;
}

void AdminServer::HandleEvents() {
  if (epoll_fd_ < 0) return;
  epoll_event events[kMaxEventsPerWait];
  int ready = epoll_wait(epoll_fd_, events, kMaxEventsPerWait, 0);
  bool timer_fired = false;
  for (int i = 0; i < ready; i++) {
    const uint64_t data = events[i].data.u64;
    if (data == kUnixListenerTag) {
      AcceptAll(unix_fd_, false);
    } else if (data == kTcpListenerTag) {
      AcceptAll(tcp_fd_, true);
    } else if (data == kTimerTag) {
      uint64_t expirations = 0;
      [[maybe_unused]] ssize_t got = read(timer_fd_, &expirations, sizeof(expirations));
      timer_fired = true;
    } else {
      OnConnectionEvent(reinterpret_cast<Connection*>(data), events[i].events);
    }
  }
  // A connection closed above is removed from connections_ only here, so
  // that a pointer later in `events` never refers to freed memory.
  RemoveClosedConnections();
  if (timer_fired || ready > 0) ExpireDeadlines();
  ArmTimer();
}

void AdminServer::AcceptAll(int listen_fd, bool tcp) {
  for (int i = 0; i < kMaxAcceptsPerEvent; i++) {
    Connection* connection = nullptr;
    bool over_capacity = false;
    if (!AcceptOne(listen_fd, tcp, &connection, &over_capacity)) return;
    if (connection == nullptr) continue;
    AdminResponse response;
    if (over_capacity) {
      counters_.over_capacity++;
      connection->deadline_ns = MonotonicNs() + kLingerNs;
      response.SetError(503, "too many admin connections; retry later");
    } else if (!tcp && !PeerAllowed(connection->fd)) {
      counters_.rejected_peers++;
      response.SetError(403, "permission denied: the admin socket accepts only the "
                             "process's own user, root and admin_group");
    } else {
      continue;
    }
    StartResponse(connection, response);
  }
}

bool AdminServer::AcceptOne(int listen_fd, bool tcp, Connection** accepted,
                            bool* over_capacity) {
  base::MutexLock lock(&g_connections_lock);
  int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED && g_log_limit.Allow()) {
      base::Log("admin server: accept failed (errno %d)", errno);
    }
    return false;
  }
  counters_.accepted++;
  const int open = static_cast<int>(connections_.size());
  if (open >= 2 * options_.max_connections) {
    counters_.over_capacity++;
    SendAndClose(fd, 503, "too many admin connections; retry later");
    return true;
  }
  *over_capacity = open >= options_.max_connections;
  auto connection = std::make_unique<Connection>();
  connection->fd = fd;
  connection->tcp = tcp;
  connection->deadline_ns = MonotonicNs() + options_.timeout_ms * 1000000;
  Connection* raw = connection.get();
  if (!AddToEpoll(epoll_fd_, fd, EPOLLIN | EPOLLRDHUP, reinterpret_cast<uint64_t>(raw))) {
    close(fd);
    return true;
  }
  connections_.push_back(std::move(connection));
  *accepted = raw;
  return true;
}

bool AdminServer::PeerAllowed(int fd) {
  ucred peer = {};
  socklen_t length = sizeof(peer);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0) return false;
  if (peer.uid == 0 || peer.uid == geteuid()) return true;
  if (options_.allowed_group == 0) return false;
  if (peer.gid == options_.allowed_group) return true;
  gid_t groups[256];
  socklen_t groups_length = sizeof(groups);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &groups_length) != 0) return false;
  const size_t count = groups_length / sizeof(gid_t);
  return std::find(groups, groups + count, options_.allowed_group) != groups + count;
}

void AdminServer::OnConnectionEvent(Connection* connection, uint32_t events) {
  if (connection->fd < 0) return;
  switch (connection->state) {
    case Connection::State::kReading:
      ReadRequest(connection);
      break;
    case Connection::State::kWriting:
      if (events & (EPOLLERR | EPOLLHUP)) {
        CloseConnection(connection);
      } else {
        WriteResponse(connection);
      }
      break;
    case Connection::State::kLingering:
      Linger(connection);
      break;
  }
}

void AdminServer::ReadRequest(Connection* connection) {
  const HttpLimits& limits = options_.limits;
  // One byte past the limits' sum is enough for the parser to reject.
  const size_t max_input =
      limits.max_request_line + limits.max_header_bytes + limits.max_body + 1;
  char chunk[kReadChunk];
  bool peer_closed = false;
  while (connection->input.size() < max_input) {
    size_t want = std::min(sizeof(chunk), max_input - connection->input.size());
    ssize_t got = recv(connection->fd, chunk, want, 0);
    if (got > 0) {
      connection->input.append(chunk, static_cast<size_t>(got));
      continue;
    }
    if (got == 0) peer_closed = true;
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno != EAGAIN) peer_closed = true;
    break;
  }

  AdminRequest request;
  HttpParseResult result = ParseHttpRequest(connection->input, limits, &request);
  if (result.status == HttpParseStatus::kError) {
    counters_.rejected_requests++;
    AdminResponse response;
    response.SetError(result.error_status, result.error_message);
    StartResponse(connection, response);
    return;
  }
  if (result.status == HttpParseStatus::kIncomplete) {
    if (peer_closed) CloseConnection(connection);
    return;
  }
  counters_.requests++;
  StartResponse(connection, Dispatch(request, connection->tcp));
}

AdminResponse AdminServer::Dispatch(AdminRequest& request, bool tcp) {
  AdminResponse response;
  if (tcp && (request.method != "GET" || request.path != "/metrics")) {
    response.SetError(404, "this port serves only GET /metrics; use the Unix socket");
    return response;
  }
  AdminEndpointMatch match = FindAdminEndpoint(request.method, request.path);
  if (match.handler == nullptr) {
    if (match.path_known) {
      response.SetError(405, "method not allowed on " + request.path + "; GET / lists endpoints");
    } else {
      response.SetError(404, "no endpoint " + request.path + "; GET / lists endpoints");
    }
    return response;
  }
  request.path_suffix = std::move(match.path_suffix);
  try {
    match.handler(request, &response);
  } catch (const std::bad_alloc&) {
    response.SetError(500, "out of memory while building the response");
  }
  return response;
}

void AdminServer::StartResponse(Connection* connection, const AdminResponse& response) {
  connection->output = FormatHttpResponse(response);
  connection->written = 0;
  connection->state = Connection::State::kWriting;
  connection->input.clear();
  connection->input.shrink_to_fit();
  ModifyEpoll(epoll_fd_, connection->fd, EPOLLOUT, reinterpret_cast<uint64_t>(connection));
  WriteResponse(connection);
}

void AdminServer::WriteResponse(Connection* connection) {
  while (connection->written < connection->output.size()) {
    ssize_t sent = send(connection->fd, connection->output.data() + connection->written,
                        connection->output.size() - connection->written, MSG_NOSIGNAL);
    if (sent > 0) {
      connection->written += static_cast<size_t>(sent);
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno == EAGAIN) return;  // EPOLLOUT calls again
    CloseConnection(connection);
    return;
  }
  // Everything is sent: stop writing and drain what the client still sends,
  // so that closing does not reset the connection before it reads.
  connection->output.clear();
  connection->output.shrink_to_fit();
  shutdown(connection->fd, SHUT_WR);
  connection->state = Connection::State::kLingering;
  connection->deadline_ns = std::min(connection->deadline_ns, MonotonicNs() + kLingerNs);
  ModifyEpoll(epoll_fd_, connection->fd, EPOLLIN | EPOLLRDHUP,
              reinterpret_cast<uint64_t>(connection));
  Linger(connection);
}

void AdminServer::Linger(Connection* connection) {
  char discard[4096];
  for (int i = 0; i < 16; i++) {
    ssize_t got = recv(connection->fd, discard, sizeof(discard), 0);
    if (got > 0) continue;
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    break;
  }
  CloseConnection(connection);
}

void AdminServer::CloseConnection(Connection* connection) {
  base::MutexLock lock(&g_connections_lock);
  if (connection->fd < 0) return;
  // close() alone leaves the registration in the epoll set while another
  // descriptor refers to the same socket, as the copies of a child between
  // fork (or posix_spawn) and exec do. epoll would then report events with
  // the address of a freed connection.
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, connection->fd, nullptr);
  close(connection->fd);
  connection->fd = -1;
}

void AdminServer::ExpireDeadlines() {
  const int64_t now = MonotonicNs();
  for (auto& connection : connections_) {
    if (connection->fd < 0 || connection->deadline_ns > now) continue;
    if (connection->state == Connection::State::kReading) {
      counters_.timeouts++;
      // The response gets a short deadline of its own.
      connection->deadline_ns = now + kLingerNs;
      AdminResponse response;
      response.SetError(408, "the request was not complete within admin_timeout");
      StartResponse(connection.get(), response);
    } else {
      CloseConnection(connection.get());
    }
  }
  RemoveClosedConnections();
}

void AdminServer::RemoveClosedConnections() {
  base::MutexLock lock(&g_connections_lock);
  connections_.erase(std::remove_if(connections_.begin(), connections_.end(),
                                    [](const auto& connection) { return connection->fd < 0; }),
                     connections_.end());
}

void AdminServer::ArmTimer() {
  if (timer_fd_ < 0) return;
  int64_t earliest = 0;
  for (const auto& connection : connections_) {
    if (earliest == 0 || connection->deadline_ns < earliest) earliest = connection->deadline_ns;
  }
  itimerspec spec = {};
  if (earliest != 0) {
    spec.it_value.tv_sec = earliest / 1000000000;
    spec.it_value.tv_nsec = earliest % 1000000000;
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  }
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void LockAdminConnectionsForFork() { pthread_mutex_lock(&g_connections_lock); }

void UnlockAdminConnectionsAfterFork() { pthread_mutex_unlock(&g_connections_lock); }

std::string ExpandSocketPath(const std::string& pattern, pid_t pid, uid_t uid) {
  std::string path;
  for (size_t i = 0; i < pattern.size(); i++) {
    if (pattern[i] == '%' && i + 1 < pattern.size() && pattern[i + 1] == 'p') {
      path += std::to_string(pid);
      i++;
    } else if (pattern[i] == '%' && i + 1 < pattern.size() && pattern[i + 1] == 'u') {
      path += std::to_string(uid);
      i++;
    } else if (pattern[i] == '%' && i + 1 < pattern.size() && pattern[i + 1] == '%') {
      path += '%';
      i++;
    } else {
      path += pattern[i];
    }
  }
  return path;
}

}  // namespace memward::accounting
