// The admin server: HTTP/1.1 over a Unix domain socket (and, optionally, a
// TCP port that serves only GET /metrics), dispatching each request to the
// endpoint table of accounting/admin_endpoints.h.
//
// The server owns one epoll set over its listeners, its connections and a
// timerfd for connection deadlines. Its owner watches poll_fd() (the warden
// does, see accounting/admin_service.h) and calls HandleEvents() when it is
// readable. HandleEvents does not wait for I/O: every socket is
// non-blocking, and it waits on epoll with a zero timeout. Every connection gets one request and
// one response, then the server closes it ("Connection: close").
//
// Limits: the request size limits of HttpLimits, a deadline per connection
// (408 when it passes before a complete request), and a cap on open
// connections. Beyond the cap a connection gets a 503 and is kept up to the
// linger time, so that the client can send its request and read the
// response. Closing at once made clients fail on send with EPIPE. Beyond
// twice the cap a connection is closed at once. A Unix socket peer must be root, the server's
// own user, or in `allowed_group` (SO_PEERCRED, SO_PEERGROUPS); others get
// 403.
//
// Thread safety: one thread calls every method; the warden thread in a
// running process, a test's own loop in unit tests. Fork is the exception:
// the set of open connection descriptors changes only under a process-wide
// lock that the fork handler holds across fork
// (LockAdminConnectionsForFork), so a child can close exactly the
// descriptors its parent had open (CloseInForkedChild).
#ifndef MEMWARD_ACCOUNTING_ADMIN_SERVER_H_
#define MEMWARD_ACCOUNTING_ADMIN_SERVER_H_

#include <stdint.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "accounting/http_parser.h"

namespace memward::accounting {

struct AdminServerOptions {
  std::string socket_path;      // the Unix socket to create; empty for none
  uint32_t allowed_group = 0;   // a gid that may connect besides the user; 0 for none
  int tcp_port = 0;             // 0: no TCP listener; -1: any free port (tests)
  bool tcp_any_address = false; // bind 0.0.0.0 instead of 127.0.0.1
  HttpLimits limits;
  int max_connections = 32;
  int64_t timeout_ms = 5000;    // per connection, from accept to the last byte sent
};

// Counts since Open, for GET /stats.
struct AdminServerCounters {
  uint64_t accepted = 0;          // connections accepted
  uint64_t requests = 0;          // requests dispatched to an endpoint
  uint64_t rejected_peers = 0;    // 403: peer credentials not allowed
  uint64_t rejected_requests = 0; // 4xx from the parser (malformed or over a limit)
  uint64_t timeouts = 0;          // 408
  uint64_t over_capacity = 0;     // 503: too many open connections
};

class AdminServer {
 public:
  AdminServer();
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Creates the listeners, the epoll set and the timer. On failure closes
  // what it opened, sets `error` to what failed and what to do, and returns
  // false.
  bool Open(const AdminServerOptions& options, std::string* error);

  // Closes every descriptor. With `unlink_socket`, removes the socket file
  // if it is still the one this server created (same inode).
  void Close(bool unlink_socket);

  // Close for a forked child, which must not free what the parent's warden
  // thread may have been changing at fork: closes every descriptor, and
  // leaks the connections' buffers instead of freeing them. Requires that
  // the fork handler held LockAdminConnectionsForFork across fork and has
  // released it.
  void CloseInForkedChild();

  // Accepts, reads, dispatches and writes whatever is ready, without
  // blocking, then re-arms the deadline timer.
  void HandleEvents();

  bool is_open() const { return epoll_fd_ >= 0; }
  int poll_fd() const { return epoll_fd_; }
  const std::string& socket_path() const { return options_.socket_path; }
  int tcp_port() const { return bound_tcp_port_; }
  int open_connections() const { return static_cast<int>(connections_.size()); }
  const AdminServerCounters& counters() const { return counters_; }
  // The errno of a failed epoll or timerfd creation in the last Open, or 0.
  int open_errno() const { return open_errno_; }

 private:
  struct Connection;

  bool OpenUnixListener(std::string* error);
  bool OpenTcpListener(std::string* error);
  void CloseListeners(bool unlink_socket);
  void AcceptAll(int listen_fd, bool tcp);
  // Accepts one connection; false when none is waiting. Sets `accepted` to
  // the new connection, or leaves it when the connection was refused, and
  // `over_capacity` when it is beyond the cap.
  bool AcceptOne(int listen_fd, bool tcp, Connection** accepted, bool* over_capacity);
  void OnConnectionEvent(Connection* connection, uint32_t events);
  void ReadRequest(Connection* connection);
  void StartResponse(Connection* connection, const AdminResponse& response);
  void WriteResponse(Connection* connection);
  void Linger(Connection* connection);
  void CloseConnection(Connection* connection);
  void RemoveClosedConnections();
  void ExpireDeadlines();
  void ArmTimer();
  bool PeerAllowed(int fd);
  AdminResponse Dispatch(AdminRequest& request, bool tcp);

  AdminServerOptions options_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int unix_fd_ = -1;
  int tcp_fd_ = -1;
  int bound_tcp_port_ = 0;
  ino_t socket_inode_ = 0;
  dev_t socket_device_ = 0;
  std::vector<std::unique_ptr<Connection>> connections_;
  AdminServerCounters counters_;
  int open_errno_ = 0;
};

// The lock that guards every server's connection descriptors, for the fork
// handler (preload/fork_handlers.cc); both processes release it.
void LockAdminConnectionsForFork();
void UnlockAdminConnectionsAfterFork();

// Replaces each "%p" in `pattern` with `pid`, each "%u" with `uid` and "%%"
// with "%".
std::string ExpandSocketPath(const std::string& pattern, pid_t pid, uid_t uid);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_ADMIN_SERVER_H_
