// Error responses in OpenAI's shape:
// {"error":{"message":...,"type":...,"param":...,"code":...}}.
#pragma once

#include <string>
#include <string_view>

namespace memward::gateway {

struct ApiError {
  int status = 500;
  std::string_view type;     // "invalid_request_error", "authentication_error", ...
  std::string_view code;     // a stable machine-readable code, or empty for null
  std::string message;
  std::string_view param;    // the request field at fault, or empty for null
};

// The JSON body of an error response.
std::string ErrorBody(const ApiError& error);

ApiError InvalidRequest(std::string message, std::string_view param = {},
                        std::string_view code = {});

}  // namespace memward::gateway
