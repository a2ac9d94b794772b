#include "accounting/admin_socket.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace memward::accounting {
namespace {

constexpr int kListenBacklog = 64;

std::string ErrnoText(int error) { return std::string(strerror(error)); }

// Creates every missing directory of `directory` with mode 0700 and checks
// that the last one is a directory owned by this user or root, so that
// another user cannot plant or read the socket.
bool EnsureDirectory(const std::string& directory, std::string* error) {
  for (size_t slash = 1; slash <= directory.size(); slash++) {
    if (slash != directory.size() && directory[slash] != '/') continue;
    std::string prefix = directory.substr(0, slash);
    if (mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      *error = "cannot create directory " + prefix + ": " + ErrnoText(errno) +
               "; set admin_socket to a writable path";
      return false;
    }
  }
  struct stat info;
  if (lstat(directory.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    *error = directory + " is not a directory; set admin_socket to another path";
    return false;
  }
  if (info.st_uid != geteuid() && info.st_uid != 0) {
    *error = directory + " is owned by uid " + std::to_string(info.st_uid) +
             ", not by this user or root; set admin_socket to a directory of your own";
    return false;
  }
  return true;
}

sockaddr_un UnixAddress(const std::string& path) {
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

// Connects to `address` without blocking and returns 0, or the errno of
// the failure. EAGAIN means a live server whose backlog is full.
int ProbeConnect(const sockaddr_un& address) {
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return errno;
  int result = connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  int error = result == 0 ? 0 : errno;
  close(probe);
  return error;
}

// Returns true when a process accepts connections on `path`; sets
// `refused` when connect(2) reported ECONNREFUSED (no process listens).
bool SocketIsLive(const sockaddr_un& address, bool* refused) {
  const int error = ProbeConnect(address);
  *refused = error == ECONNREFUSED;
  return error == 0 || error == EAGAIN;
}

// Handles EADDRINUSE: removes a stale socket file. Returns false with
// `error` set when the file must stay.
bool ReplaceStaleSocket(const std::string& path, const sockaddr_un& address,
                        std::string* error) {
  struct stat info;
  if (lstat(path.c_str(), &info) != 0) return errno == ENOENT;
  if (!S_ISSOCK(info.st_mode)) {
    *error = path + " exists and is not a socket; remove it or set admin_socket";
    return false;
  }
  bool refused = false;
  if (SocketIsLive(address, &refused)) {
    *error = "another process serves " + path + "; set admin_socket to another path";
    return false;
  }
  if (!refused) {
    *error = "cannot tell whether " + path + " is in use; remove it if its process is gone";
    return false;
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    *error = "cannot remove the stale socket " + path + ": " + ErrnoText(errno);
    return false;
  }
  return true;
}

// Returns the pid in a file name of the form <pid>.sock, as memward writes
// it (no leading zero), or 0.
pid_t PidOfSocketName(const char* name) {
  if (name[0] < '1' || name[0] > '9') return 0;
  pid_t pid = 0;
  const char* cursor = name;
  for (; *cursor >= '0' && *cursor <= '9'; cursor++) {
    if (pid > 100000000) return 0;
    pid = pid * 10 + (*cursor - '0');
  }
  if (strcmp(cursor, ".sock") != 0) return 0;
  return pid;
}

// Returns whether connecting to `path` fails with ECONNREFUSED.
bool RefusesConnections(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) return false;
  return ProbeConnect(UnixAddress(path)) == ECONNREFUSED;
}

// A socket file this young may belong to a server between its bind, which
// creates it, and its listen: that server refuses connections too. Its
// modification time is the bind's (chmod changes only the change time).
constexpr time_t kMinStaleAgeSeconds = 10;

// Returns whether `path` may be the socket of an ended process: no process
// here has `pid`, and it is a socket created kMinStaleAgeSeconds ago or
// more. Sets `identity` to the file it checked.
bool MayBeLeftBehind(const std::string& path, pid_t pid, struct stat* identity) {
  if (pid == getpid()) return false;
  if (kill(pid, 0) == 0 || errno != ESRCH) return false;
  if (lstat(path.c_str(), identity) != 0 || !S_ISSOCK(identity->st_mode)) return false;
  return time(nullptr) - identity->st_mtime >= kMinStaleAgeSeconds;
}

// Removes `path` if it is still the file that `identity` describes: a
// process given the same pid meanwhile may have replaced it with its own.
// The change time is compared too, since a file system may give the new
// socket the inode number of the one it replaced.
bool RemoveIfUnchanged(const std::string& path, const struct stat& identity) {
  struct stat now;
  if (lstat(path.c_str(), &now) != 0) return false;
  if (now.st_dev != identity.st_dev || now.st_ino != identity.st_ino) return false;
  if (now.st_ctim.tv_sec != identity.st_ctim.tv_sec ||
      now.st_ctim.tv_nsec != identity.st_ctim.tv_nsec) {
    return false;
  }
  return unlink(path.c_str()) == 0;
}

}  // namespace

int RemoveSocketsOfEndedProcesses(const std::string& directory) {
  DIR* entries = opendir(directory.c_str());
  if (entries == nullptr) return 0;
  int removed = 0;
  int scanned = 0;
  int probed = 0;
  while (const dirent* entry = readdir(entries)) {
    if (++scanned > kMaxScannedSockets || probed >= kMaxProbedSockets) break;
    const pid_t pid = PidOfSocketName(entry->d_name);
    if (pid == 0) continue;
    const std::string path = directory + "/" + entry->d_name;
    struct stat identity;
    if (!MayBeLeftBehind(path, pid, &identity)) continue;
    probed++;
    if (RefusesConnections(path) && RemoveIfUnchanged(path, identity)) removed++;
  }
  closedir(entries);
  return removed;
}

bool OpenUnixListener(const std::string& path, UnixListener* listener, std::string* error) {
  if (path.empty() || path[0] != '/') {
    *error = "admin_socket must be an absolute path, not \"" + path + "\"";
    return false;
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    *error = "admin_socket path is longer than " +
             std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes: " + path;
    return false;
  }
  size_t slash = path.rfind('/');
  if (slash > 0 && !EnsureDirectory(path.substr(0, slash), error)) return false;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = "socket(AF_UNIX) failed: " + ErrnoText(errno);
    return false;
  }
  const sockaddr_un address = UnixAddress(path);
  const sockaddr* generic = reinterpret_cast<const sockaddr*>(&address);
  int bound = bind(fd, generic, sizeof(address));
  if (bound != 0 && errno == EADDRINUSE) {
    if (!ReplaceStaleSocket(path, address, error)) {
      close(fd);
      return false;
    }
    bound = bind(fd, generic, sizeof(address));
  }
  if (bound != 0) {
    *error = "cannot bind " + path + ": " + ErrnoText(errno);
    close(fd);
    return false;
  }
  struct stat info;
  if (chmod(path.c_str(), 0600) != 0 || stat(path.c_str(), &info) != 0 ||
      listen(fd, kListenBacklog) != 0) {
    *error = "cannot set up " + path + ": " + ErrnoText(errno);
    unlink(path.c_str());
    close(fd);
    return false;
  }
  listener->fd = fd;
  listener->device = info.st_dev;
  listener->inode = info.st_ino;
  return true;
}

int OpenTcpListener(int port, bool any_address, int* bound_port, std::string* error) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = "socket(AF_INET) failed: " + ErrnoText(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(any_address ? INADDR_ANY : INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, kListenBacklog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    *error = "cannot listen on TCP port " + std::to_string(port) + ": " + ErrnoText(errno) +
             "; set admin_tcp_port to a free port or 0";
    close(fd);
    return -1;
  }
  *bound_port = ntohs(address.sin_port);
  return fd;
}

void RemoveSocketFile(const std::string& path, dev_t device, ino_t inode) {
  struct stat info;
  if (lstat(path.c_str(), &info) != 0) return;
  if (info.st_dev == device && info.st_ino == inode) unlink(path.c_str());
}

}  // namespace memward::accounting
