#include "harness/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <stdexcept>
#include <thread>

#include "harness/process.h"

namespace memward::integration {
namespace {

class Socket {
 public:
  Socket() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::runtime_error(std::string("socket() failed: ") + strerror(errno));
  }
  ~Socket() { close(fd_); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

bool connect_to(const Socket& socket, std::uint16_t port) {
  sockaddr_in address = loopback_address(port);
  return connect(socket.fd(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
}

void set_socket_timeout(const Socket& socket, std::chrono::milliseconds timeout) {
  timeval value{};
  value.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  value.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(socket.fd(), SOL_SOCKET, SO_RCVTIMEO, &value, sizeof value);
  setsockopt(socket.fd(), SOL_SOCKET, SO_SNDTIMEO, &value, sizeof value);
}

std::string lower_case(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string decode_chunked(std::string_view data) {
  std::string body;
  std::size_t position = 0;
  while (true) {
    std::size_t line_end = data.find("\r\n", position);
    if (line_end == std::string_view::npos) throw std::runtime_error("truncated chunk size line");
    std::string size_text(data.substr(position, line_end - position));
    std::size_t chunk_size = std::stoul(size_text, nullptr, 16);
    position = line_end + 2;
    if (chunk_size == 0) return body;
    if (data.size() < position + chunk_size + 2) throw std::runtime_error("truncated chunk");
    body.append(data.substr(position, chunk_size));
    position += chunk_size + 2;
  }
}

HttpResponse parse_response(const std::string& raw) {
  std::size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    throw std::runtime_error("response has no end of headers (" + std::to_string(raw.size()) +
                             " bytes received)");
  }
  HttpResponse response;
  std::string_view head(raw.data(), header_end);
  std::size_t line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  if (status_line.substr(0, 5) != "HTTP/" || status_line.size() < 12) {
    throw std::runtime_error("invalid status line: " + std::string(status_line));
  }
  response.status = std::stoi(std::string(status_line.substr(9, 3)));

  while (line_end != std::string_view::npos) {
    std::size_t next = head.find("\r\n", line_end + 2);
    std::string_view line = head.substr(line_end + 2, next == std::string_view::npos
                                                          ? std::string_view::npos
                                                          : next - line_end - 2);
    std::size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      response.headers[lower_case(std::string(line.substr(0, colon)))] = std::string(value);
    }
    line_end = next;
  }

  std::string_view payload(raw.data() + header_end + 4, raw.size() - header_end - 4);
  auto encoding = response.headers.find("transfer-encoding");
  if (encoding != response.headers.end() && lower_case(encoding->second) == "chunked") {
    response.body = decode_chunked(payload);
    return response;
  }
  response.body = std::string(payload);
  auto length = response.headers.find("content-length");
  if (length != response.headers.end() && std::stoull(length->second) != response.body.size()) {
    throw std::runtime_error("body has " + std::to_string(response.body.size()) +
                             " bytes but Content-Length is " + length->second);
  }
  return response;
}

}  // namespace

std::uint16_t find_free_port() {
  Socket socket;
  sockaddr_in address = loopback_address(0);
  if (bind(socket.fd(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    throw std::runtime_error(std::string("bind to 127.0.0.1:0 failed: ") + strerror(errno));
  }
  socklen_t length = sizeof address;
  if (getsockname(socket.fd(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::runtime_error(std::string("getsockname() failed: ") + strerror(errno));
  }
  return ntohs(address.sin_port);
}

bool wait_for_tcp_port(std::uint16_t port, Process& server, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!server.running()) return false;
    Socket socket;
    if (connect_to(socket, port)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

HttpResponse http_get(std::uint16_t port, std::string_view target,
                      const std::vector<std::string>& extra_headers,
                      std::chrono::milliseconds timeout) {
  Socket socket;
  set_socket_timeout(socket, timeout);
  if (!connect_to(socket, port)) {
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) +
                             " failed: " + strerror(errno));
  }

  std::string request = "GET " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& header : extra_headers) request += header + "\r\n";
  request += "Connection: close\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    ssize_t count = send(socket.fd(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) throw std::runtime_error(std::string("send failed: ") + strerror(errno));
    sent += static_cast<std::size_t>(count);
  }

  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string raw;
  char buffer[64 * 1024];
  while (true) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("response to GET " + std::string(target) + " timed out after " +
                               std::to_string(raw.size()) + " bytes");
    }
    ssize_t count = recv(socket.fd(), buffer, sizeof buffer, 0);
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) {
      throw std::runtime_error("recv failed after " + std::to_string(raw.size()) +
                               " bytes: " + strerror(errno));
    }
    if (count == 0) break;
    raw.append(buffer, static_cast<std::size_t>(count));
  }
  return parse_response(raw);
}

std::string gunzip(std::string_view compressed) {
  z_stream stream{};
  // 16 + MAX_WBITS selects the gzip wrapper.
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) throw std::runtime_error("inflateInit2 failed");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  std::string output;
  char buffer[64 * 1024];
  int result = Z_OK;
  while (result != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof buffer;
    result = inflate(&stream, Z_NO_FLUSH);
    if (result != Z_OK && result != Z_STREAM_END) {
      std::string message = stream.msg != nullptr ? stream.msg : "no message";
      inflateEnd(&stream);
      throw std::runtime_error("invalid gzip data: " + message);
    }
    output.append(buffer, sizeof buffer - stream.avail_out);
    if (result == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      throw std::runtime_error("gzip data ends before the end of the stream");
    }
  }
  inflateEnd(&stream);
  return output;
}

}  // namespace memward::integration
