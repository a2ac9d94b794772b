#include "http_util.h"

namespace memward::gateway {

StringResponse MakeResponse(http::status status, std::string_view content_type, std::string body,
                            bool keep_alive) {
  StringResponse response{status, 11};
  response.set(http::field::server, "memward-gateway");
  response.set(http::field::content_type, content_type);
  response.body() = std::move(body);
  response.keep_alive(keep_alive);
  response.prepare_payload();
  return response;
}

StringResponse MakeErrorResponse(const ApiError& error, bool keep_alive, int retry_after_seconds) {
  StringResponse response = MakeResponse(http::int_to_status(unsigned(error.status)),
                                         "application/json", ErrorBody(error), keep_alive);
  if (error.status == 429 || error.status == 503) {
    response.set(http::field::retry_after, std::to_string(retry_after_seconds));
  }
  return response;
}

std::string_view TargetPath(std::string_view target) {
  return target.substr(0, target.find('?'));
}

}  // namespace memward::gateway
