// POST /v1/chat/completions and /v1/completions: authentication, admission,
// the memward request, the response cache and forwarding upstream.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <chrono>
#include <memory>
#include <string_view>

#include "completion_request.h"
#include "gateway_context.h"
#include "http_util.h"

namespace memward::gateway {

// Handles one completion request whose headers `parser` has read; reads the
// body from `buffer` and the client. Writes the access-log line. Returns
// whether the client connection may be kept alive.
boost::asio::awaitable<bool> HandleCompletion(Worker& worker,
                                              const std::shared_ptr<Connection>& connection,
                                              ClientRequestParser& parser,
                                              boost::beast::flat_buffer& buffer,
                                              CompletionKind kind, std::string_view path,
                                              std::chrono::steady_clock::time_point start);

// The tenant of an "Authorization: Bearer KEY" header, or nullopt.
std::optional<std::size_t> FindTenant(const Services& services, std::string_view authorization);

}  // namespace memward::gateway
