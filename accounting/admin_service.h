// The process's admin server on the warden thread: started from the
// settings (admin_socket, admin_tcp_port, ...), re-created under the
// child's pid after fork, and removed at exit.
//
// Lock order: g_service_lock (admin_service.cc) is taken by Start and Stop
// only, never by the allocation path, and never held while taking a lock of
// alloc/ or accounting/'s core. The warden's table lock may be taken inside
// it (Watch, Unwatch).
#ifndef MEMWARD_ACCOUNTING_ADMIN_SERVICE_H_
#define MEMWARD_ACCOUNTING_ADMIN_SERVICE_H_

#include <string>

namespace memward::accounting {

// Opens the admin server that the settings describe, registers memward's
// own endpoints, watches the server on the warden and starts the warden.
// Called from the libraries' constructors, never inside malloc; later calls
// do nothing. A failure (a live process on the socket path, a directory of
// another user) is reported once on stderr and leaves the process without
// an admin server.
void StartAdminService();

// Stops serving and removes the socket file if it is still this process's.
// Runs at exit (atexit); the process serves no admin socket afterwards.
void StopAdminService();

// Called by the child's fork handler before the warden is restarted: closes
// the descriptors inherited from the parent (the parent's socket stays the
// parent's) and drops the server's watch. The warden thread opens the
// child's server 0.2 to 0.7 s later.
void ResetAdminServiceInChild();

// The socket path in use, or "" when no Unix socket is served.
std::string AdminSocketPath();

// The TCP port in use, or 0.
int AdminTcpPort();

// Registers the endpoints that the admin server itself serves: GET /,
// /stats, /tenants, /tenants/*, /requests, /config, /metrics; PUT /config;
// POST /purge. Safe to call more than once.
void RegisterCoreAdminEndpoints();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_ADMIN_SERVICE_H_
