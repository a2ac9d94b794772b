// Listening sockets for the admin server: the Unix socket file (its
// directory, mode and stale-file replacement) and the loopback TCP port.
#ifndef MEMWARD_ACCOUNTING_ADMIN_SOCKET_H_
#define MEMWARD_ACCOUNTING_ADMIN_SOCKET_H_

#include <sys/types.h>

#include <string>

namespace memward::accounting {

// A Unix listening socket and the identity of its file.
struct UnixListener {
  int fd = -1;
  dev_t device = 0;  // the socket file's device and inode, so that only
  ino_t inode = 0;   // this file is removed at exit
};

// Creates a non-blocking listening socket at `path` with mode 0600. Missing
// directories are created with mode 0700; the socket's directory must be
// owned by this user or root. An existing socket file is replaced when
// connecting to it fails with ECONNREFUSED, because its process is gone. A
// live socket, or a file that is not a socket, is left alone and is an
// error. On failure returns false and sets `error`.
bool OpenUnixListener(const std::string& path, UnixListener* listener, std::string* error);

// Creates a non-blocking TCP listening socket on 127.0.0.1 (or every
// address with `any_address`) and `port` (0 for a free one). Sets
// `bound_port` to the port bound. On failure returns -1 and sets `error`.
int OpenTcpListener(int port, bool any_address, int* bound_port, std::string* error);

// Removes `path` if it is still the file `listener` created.
void RemoveSocketFile(const std::string& path, dev_t device, ino_t inode);

// Removes the sockets named <pid>.sock in `directory` that processes left
// behind when they ended without exit handlers (killed by a signal, or
// ended with _exit, as forked workers often do): no process here has the
// pid, the file was created 10 s ago or more, and connecting fails with
// ECONNREFUSED. A socket of a process in another pid namespace accepts, so
// it stays. Reads at most kMaxScannedSockets entries and connects to at
// most kMaxProbedSockets of them, so that a crowded directory adds a few
// milliseconds to a start-up at most. The next starts remove what is left.
// Returns the number of files removed.
inline constexpr int kMaxScannedSockets = 1024;
inline constexpr int kMaxProbedSockets = 64;
int RemoveSocketsOfEndedProcesses(const std::string& directory);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_ADMIN_SOCKET_H_
