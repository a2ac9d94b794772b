#include "accounting/admin_service.h"

#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string_view>

#include "accounting/admin_handlers.h"
#include "accounting/admin_socket.h"
#include "accounting/admin_server.h"
#include "accounting/tenant.h"
#include "accounting/warden.h"
#include "alloc/bootstrap.h"
#include "base/log.h"
#include "base/mutex_lock.h"

namespace memward::accounting {
namespace {

// Guards g_server's life cycle (open, close), g_started and g_stopped.
// Handlers never take it, so Stop may wait for a running handler while
// holding it.
pthread_mutex_t g_service_lock = PTHREAD_MUTEX_INITIALIZER;
// Created once and never deleted, so the warden thread and the exit
// handler never see it destroyed by static destructors.
AdminServer* g_server = nullptr;
bool g_started = false;
// Set by StopAdminService, so that a forked child's pending re-open does not
// create a socket after the exit handler has run.
bool g_stopped = false;
// The process whose socket g_server serves; differs from getpid() in a
// forked child until the child's server is open.
std::atomic<pid_t> g_owner_pid{0};
std::atomic<bool> g_reopen_pending{false};
// Whether ReopenInChild is registered with the warden; set in a forked
// child, inherited by its own children.
bool g_reopen_task_added = false;
// CLOCK_MONOTONIC time of the fork that set g_reopen_pending.
std::atomic<int64_t> g_forked_at_ns{0};

// A forked child opens its socket only once it has lived this long, so the
// many children that exec or _exit at once (and run no exit handler) leave
// no socket file behind.
constexpr int64_t kChildSocketDelayNs = 200 * 1000 * 1000;

int64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

// Guards the copies of the address that AdminSocketPath and AdminTcpPort
// return; a leaf lock.
pthread_mutex_t g_info_lock = PTHREAD_MUTEX_INITIALIZER;
std::string* g_socket_path = nullptr;
int g_tcp_port = 0;

void PublishAddress(const AdminServer& server) {
  base::MutexLock lock(&g_info_lock);
  if (g_socket_path == nullptr) g_socket_path = new std::string();
  *g_socket_path = server.is_open() ? server.socket_path() : std::string();
  g_tcp_port = server.is_open() ? server.tcp_port() : 0;
}

// The socket of a process that cannot use the default's directory.
constexpr char kPerUserSocketPattern[] = "/tmp/memward-%u/%p.sock";

bool UsesDefaultSocket() {
  const base::SettingSpec& spec =
      base::kSettingSpecs[static_cast<int>(base::SettingId::kAdminSocket)];
  return std::string_view(alloc::CurrentSettings().GetText(base::SettingId::kAdminSocket)) ==
         spec.default_text;
}

AdminServerOptions OptionsFromSettings() {
  using base::SettingId;
  const base::Settings& settings = alloc::CurrentSettings();
  AdminServerOptions options;
  std::string_view pattern = settings.GetText(SettingId::kAdminSocket);
  if (!pattern.empty() && pattern != "off") {
    options.socket_path = ExpandSocketPath(std::string(pattern), getpid(), geteuid());
  }
  options.allowed_group = static_cast<uint32_t>(settings.Get(SettingId::kAdminGroup));
  options.tcp_port = static_cast<int>(settings.Get(SettingId::kAdminTcpPort));
  options.tcp_any_address = settings.GetBool(SettingId::kAdminTcpAny);
  options.timeout_ms = settings.Get(SettingId::kAdminTimeout);
  options.max_connections = static_cast<int>(settings.Get(SettingId::kAdminMaxConnections));
  return options;
}

void OnServerReady(int fd, uint32_t events, void* context) {
  static_cast<AdminServer*>(context)->HandleEvents();
}

// Opens g_server from the settings and watches it. Requires g_service_lock.
void OpenAndWatchLocked() {
  AdminServerOptions options = OptionsFromSettings();
  if (options.socket_path.empty() && options.tcp_port == 0) return;
  std::string error;
  bool opened = g_server->Open(options, &error);
  if (!opened && options.tcp_port != 0 && !options.socket_path.empty()) {
    // A forked child finds the metrics port taken by its parent, and any
    // process may find it taken by another program: keep the Unix socket.
    base::Log("admin server: %s; serving the Unix socket only", error.c_str());
    options.tcp_port = 0;
    opened = g_server->Open(options, &error);
  }
  if (!opened && UsesDefaultSocket() && geteuid() != 0) {
    // The default directory has mode 0700 and belongs to the user of the
    // first process that created it. nginx's workers, which run as another
    // user than their root master, cannot bind there, so each such user
    // gets a directory of its own.
    const std::string first_error = error;
    options.socket_path = ExpandSocketPath(kPerUserSocketPattern, getpid(), geteuid());
    opened = g_server->Open(options, &error);
    if (!opened) error = first_error + "; and " + error;
  }
  if (!opened) {
    // ENOSYS or EPERM from epoll_create1 means a seccomp sandbox; a message
    // would end up in the sandboxed host's output.
    const int cause = g_server->open_errno();
    if (cause != ENOSYS && cause != EPERM) {
      base::Log("admin server not started: %s", error.c_str());
    }
    return;
  }
  g_owner_pid.store(getpid(), std::memory_order_release);
  if (!Warden::Get().Watch(g_server->poll_fd(), EPOLLIN, OnServerReady, g_server)) {
    base::Log("admin server not started: the warden's watch table is full");
    g_server->Close(true);
    return;
  }
  PublishAddress(*g_server);
  Warden::Get().Start();
}

// A periodic warden task: opens the child's server after fork.
void ReopenInChild(void*) {
  if (!g_reopen_pending.load(std::memory_order_acquire)) return;
  if (MonotonicNs() - g_forked_at_ns.load(std::memory_order_relaxed) < kChildSocketDelayNs) return;
  if (!g_reopen_pending.exchange(false, std::memory_order_acq_rel)) return;
  base::MutexLock lock(&g_service_lock);
  if (g_server == nullptr || g_server->is_open() || g_stopped) return;
  OpenAndWatchLocked();
}

void StopAtExit() { StopAdminService(); }

// Removes the sockets that ended processes left in the default directory,
// once per process at start-up, before a host may restrict its system calls
// (a forked child does not scan). Requires g_service_lock.
void RemoveLeftSocketsLocked() {
  if (!g_server->is_open() || !UsesDefaultSocket()) return;
  const std::string& path = g_server->socket_path();
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  RemoveSocketsOfEndedProcesses(path.substr(0, slash));
}

}  // namespace

void StartAdminService() {
  alloc::Bootstrap();
  MemwardAllocationScope scope;
  base::MutexLock lock(&g_service_lock);
  if (g_started) return;
  g_started = true;
  RegisterCoreAdminEndpoints();
  g_server = new AdminServer();
  OpenAndWatchLocked();
  RemoveLeftSocketsLocked();
  atexit(StopAtExit);
}

void StopAdminService() {
  base::MutexLock lock(&g_service_lock);
  g_stopped = true;
  if (g_server == nullptr || !g_server->is_open()) return;
  Warden::Get().Unwatch(g_server->poll_fd());
  const bool owner = g_owner_pid.load(std::memory_order_acquire) == getpid();
  g_server->Close(/*unlink_socket=*/owner);
  PublishAddress(*g_server);
}

void ResetAdminServiceInChild() {
  // Only this thread exists in the child; a lock held by another thread of
  // the parent at fork would never be released.
  g_service_lock = PTHREAD_MUTEX_INITIALIZER;
  g_info_lock = PTHREAD_MUTEX_INITIALIZER;
  if (g_server == nullptr || !g_server->is_open()) return;
  // Before the warden restarts, so that the child's new warden thread
  // never accepts or serves a connection meant for the parent.
  Warden::Get().UnwatchInChild(g_server->poll_fd());
  g_server->CloseInForkedChild();
  PublishAddress(*g_server);
  g_forked_at_ns.store(MonotonicNs(), std::memory_order_relaxed);
  g_reopen_pending.store(true, std::memory_order_release);
  // The task is registered in the first forked child only (a grandchild
  // inherits it), so that an unforked process's warden has no periodic
  // wake-up of the admin server's: a host that installs a strict seccomp
  // filter after start-up then sees no new system call from it. The child's
  // socket appears between kChildSocketDelayNs and this period after fork.
  if (!g_reopen_task_added) {
    g_reopen_task_added = Warden::Get().AddPeriodic("admin-reopen", 500, ReopenInChild, nullptr);
  }
}

std::string AdminSocketPath() {
  base::MutexLock lock(&g_info_lock);
  return g_socket_path == nullptr ? std::string() : *g_socket_path;
}

int AdminTcpPort() {
  base::MutexLock lock(&g_info_lock);
  return g_tcp_port;
}

}  // namespace memward::accounting
