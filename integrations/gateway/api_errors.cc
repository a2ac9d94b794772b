#include "api_errors.h"

#include <boost/json.hpp>

namespace memward::gateway {

std::string ErrorBody(const ApiError& error) {
  boost::json::object detail;
  detail["message"] = error.message;
  detail["type"] = error.type;
  if (error.param.empty()) {
    detail["param"] = nullptr;
  } else {
    detail["param"] = error.param;
  }
  if (error.code.empty()) {
    detail["code"] = nullptr;
  } else {
    detail["code"] = error.code;
  }
  boost::json::object body;
  body["error"] = std::move(detail);
  return boost::json::serialize(body);
}

ApiError InvalidRequest(std::string message, std::string_view param, std::string_view code) {
  return ApiError{400, "invalid_request_error", code, std::move(message), param};
}

}  // namespace memward::gateway
