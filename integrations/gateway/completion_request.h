// Parsing and checking a completion request body, and the forms derived from
// it: the body sent upstream and the response cache's key.
#pragma once

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "api_errors.h"

namespace memward::gateway {

enum class CompletionKind { kChat, kLegacy };

// A parsed request. Its JSON lives in `resource` when the request memory
// resource hook is on (freed all at once with the object), in the global
// heap otherwise.
struct CompletionRequest {
  std::optional<boost::json::monotonic_resource> resource;
  boost::json::value document;
  std::string_view model;  // a view into `document`
  bool stream = false;
};

// Parses `body` and checks the fields the gateway relies on: an object with
// a string "model", "messages" (chat) or "prompt" (legacy), and a boolean
// "stream" when present. Returns the error to respond with otherwise.
std::variant<std::monostate, ApiError> ParseCompletion(std::string_view body, CompletionKind kind,
                                                       bool use_memory_resource,
                                                       CompletionRequest& request);

// The body to send upstream: `original` unchanged when the upstream model
// name is the same, otherwise the document with "model" replaced.
std::string UpstreamBody(CompletionRequest& request, std::string_view original,
                         std::string_view upstream_model);

// The cache key: tenant, path, then the document serialized with object
// keys sorted and no whitespace, so that key order and spacing do not
// matter.
std::string CacheKey(std::string_view tenant, std::string_view path,
                     const boost::json::value& document);

}  // namespace memward::gateway
