// Loopback networking for the server tests: free ports, readiness checks
// and a small HTTP/1.1 client.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace memward::integration {

class Process;

// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it
// for a socket bound to port 0, which is then closed. Another program could
// take it before the server binds it, so a server that fails to start
// should be reported with its stderr.
std::uint16_t find_free_port();

// Connects to 127.0.0.1:port until a connection succeeds. Returns false when
// `server` exits first or `timeout` passes.
bool wait_for_tcp_port(std::uint16_t port, Process& server, std::chrono::milliseconds timeout);

struct HttpResponse {
  int status = 0;
  // Header names in lower case.
  std::map<std::string, std::string> headers;
  // The body after removing chunked transfer coding (not content coding).
  std::string body;
};

// Sends one GET with "Connection: close" to 127.0.0.1:port and reads the
// whole response. Throws std::runtime_error on socket errors, a timeout or a
// malformed response.
HttpResponse http_get(std::uint16_t port, std::string_view target,
                      const std::vector<std::string>& extra_headers = {},
                      std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Decompresses a gzip stream (Content-Encoding: gzip). Throws on bad data.
std::string gunzip(std::string_view compressed);

}  // namespace memward::integration
