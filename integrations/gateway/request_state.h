// The state of one completion request that its steps share: what the
// access log records, and the parts of the request the forwarding step
// needs.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "completion_request.h"
#include "gateway_context.h"
#include "memward_hooks.h"
#include "upstream.h"

namespace memward::gateway {

// The facts about a request that the access log and metrics record. It
// contains only views of the config and string literals, so that nothing in
// it is allocated inside the request's memward scope and outlives the
// request.
struct RequestRecord {
  std::string_view tenant;
  std::string_view model;
  std::string_view path;
  std::string_view upstream;
  std::string_view cache = "off";
  std::string_view error;  // a literal describing the failure, or empty
  int status = 0;          // 0 until a response was sent; 499 when the client left
  bool stream = false;
  bool keep_alive = false;
  bool cache_filled = false;
  std::uint64_t request_bytes = 0;
  std::uint64_t response_bytes = 0;
};

// Everything the forwarding step needs about the request.
struct Exchange {
  Worker& worker;
  std::shared_ptr<Connection> connection;
  const RequestMemory& memory;
  RequestRecord& record;
  ModelRoute& route;
  bool stream = false;
  std::string upstream_body;
  std::string cache_key;  // empty when the cache is off
};

// Sends the request upstream and passes the response to the client: streamed
// responses chunk by chunk as they arrive, others whole. Stores cacheable
// responses. Fills `exchange.record`.
boost::asio::awaitable<void> ForwardUpstream(Exchange& exchange, std::string_view path);

}  // namespace memward::gateway
