// HTTP helpers shared by the routes: building responses and writing them to
// the client with the write timeout.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <string>
#include <string_view>

#include "api_errors.h"
#include "config.h"

namespace memward::gateway {

namespace http = boost::beast::http;
inline constexpr auto kNoThrow = boost::asio::as_tuple(boost::asio::use_awaitable);

using StringResponse = http::response<http::string_body>;
using ClientRequestParser = http::request_parser<http::string_body>;

// A response with a body and its Content-Type.
StringResponse MakeResponse(http::status status, std::string_view content_type, std::string body,
                            bool keep_alive);

// An error response in OpenAI's shape; 429 and 503 carry Retry-After.
StringResponse MakeErrorResponse(const ApiError& error, bool keep_alive, int retry_after_seconds);

// Writes a whole message to the client within `timeout`. Returns false when
// the write failed (the client is gone or too slow).
template <typename Message>
boost::asio::awaitable<bool> WriteMessage(boost::beast::tcp_stream& client, Message& message,
                                          Milliseconds timeout) {
  client.expires_after(timeout);
  auto [error, written] = co_await http::async_write(client, message, kNoThrow);
  co_return !error;
}

// The request target without its query string.
std::string_view TargetPath(std::string_view target);

}  // namespace memward::gateway
