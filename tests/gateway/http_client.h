// A blocking HTTP/1.1 client for the gateway tests, on Boost.Beast: requests
// with any method and headers, and streamed responses read event by event.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memward::gateway_test {

struct HttpReply {
  int status = 0;
  // Header names in lower case.
  std::map<std::string, std::string> headers;
  std::string body;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// Sends one request to 127.0.0.1:port on a new connection and reads the whole
// response. Throws boost::system::system_error on socket errors and
// std::runtime_error after `timeout`.
HttpReply Fetch(std::uint16_t port, std::string_view method, std::string_view target,
                std::string_view body = {}, const Headers& headers = {},
                std::chrono::milliseconds timeout = std::chrono::seconds(20));

// The data of each "data: ..." line of an SSE body, in order.
std::vector<std::string> SseData(std::string_view body);

// A streamed response read one HTTP chunk at a time, so a test can stop in
// the middle of a stream and close the connection.
class StreamReader {
 public:
  // Sends the request and reads the response header.
  StreamReader(std::uint16_t port, std::string_view target, std::string_view body,
               const Headers& headers = {});
  ~StreamReader();
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  int status() const;
  // The next chunk's bytes, or nullopt at the end of the body.
  std::optional<std::string> NextChunk();
  // Closes the connection abruptly (RST, as a client that crashed).
  void Abort();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace memward::gateway_test
