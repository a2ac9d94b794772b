// One replayed HTTP request: a new connection to the gateway, the request,
// and the response read to its end while its timing is recorded.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "plan.h"

namespace memward::gateway::replay {

struct RequestRecord {
  std::size_t index = 0;
  std::size_t tenant = 0;
  bool stream = false;
  bool repeat = false;
  // Seconds after the start of the replay: when the plan scheduled it,
  // and when the connection attempt started.
  double scheduled_s = 0;
  double sent_s = 0;
  // HTTP status, or 0 when no response arrived (see `error`).
  int status = 0;
  // Milliseconds from sending to the response headers, to the first body
  // bytes (the first SSE event of a stream), and to the end of the response.
  double header_ms = -1;
  double first_byte_ms = -1;
  double latency_ms = -1;
  std::uint64_t response_bytes = 0;
  // A 200 response that ended properly: a stream with "data: [DONE]", or a
  // whole body.
  bool complete = false;
  // Transport error, or the start of a non-200 body.
  std::string error;
};

struct Target {
  boost::asio::ip::tcp::endpoint endpoint;
  std::string path = "/v1/chat/completions";
  std::string model = "mock-chat";
  std::chrono::milliseconds timeout{120000};
};

// Sends `request` with `api_key` (empty: no Authorization header) and fills
// `record`. Network errors go to record.error instead of being thrown.
boost::asio::awaitable<void> SendRequest(const Target& target, const PlannedRequest& request,
                                         const std::string& api_key,
                                         std::chrono::steady_clock::time_point replay_start,
                                         RequestRecord& record);

}  // namespace memward::gateway::replay
