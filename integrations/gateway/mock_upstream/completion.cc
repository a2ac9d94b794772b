#include "completion.h"

#include <array>
#include <charconv>
#include <cmath>
#include <ctime>
#include <functional>

#include <boost/json.hpp>

namespace memward::gateway::mock {
namespace {

namespace json = boost::json;

constexpr std::string_view kControlPrefix = "mock-";

template <typename Number>
std::optional<Number> ParseNumber(std::string_view text) {
  Number value{};
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || stop != end) return std::nullopt;
  return value;
}

// Sets one control from its name without prefix ("fail", "delay-ms", ...).
std::optional<RequestError> ApplyControl(std::string_view name, std::string_view value,
                                         Controls& controls) {
  auto invalid = [&](std::string_view accepted) {
    return RequestError{400, "invalid mock control " + std::string(name) + "='" +
                                 std::string(value) + "': expected " + std::string(accepted),
                        ""};
  };
  if (name == "fail") {
    auto status = ParseNumber<int>(value);
    if (!status || *status < 400 || *status > 599) return invalid("an HTTP status from 400 to 599");
    controls.fail_status = *status;
  } else if (name == "delay-ms") {
    auto milliseconds = ParseNumber<std::int64_t>(value);
    if (!milliseconds || *milliseconds < 0 || *milliseconds > kMaxDelay.count()) {
      return invalid("milliseconds from 0 to 600000");
    }
    controls.delay = std::chrono::milliseconds(*milliseconds);
  } else if (name == "drop-after-tokens") {
    auto tokens = ParseNumber<std::uint32_t>(value);
    if (!tokens) return invalid("a whole number of tokens");
    controls.drop_after_tokens = *tokens;
  } else if (name == "tokens-per-second") {
    auto pace = ParseNumber<double>(value);
    if (!pace || !std::isfinite(*pace) || *pace < 0) return invalid("a number >= 0 (0: no pacing)");
    controls.tokens_per_second = *pace;
  }
  return std::nullopt;
}

// Counts the words of `text`, and applies the "mock-NAME=VALUE" words.
std::optional<RequestError> ScanPrompt(std::string_view text, std::uint32_t& words,
                                       Controls& controls) {
  std::size_t position = 0;
  while (position < text.size()) {
    position = text.find_first_not_of(" \t\r\n", position);
    if (position == std::string_view::npos) break;
    std::size_t end = text.find_first_of(" \t\r\n", position);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(position, end - position);
    ++words;
    if (word.starts_with(kControlPrefix)) {
      std::size_t equals = word.find('=');
      if (equals != std::string_view::npos) {
        std::string_view name = word.substr(kControlPrefix.size(), equals - kControlPrefix.size());
        if (auto error = ApplyControl(name, word.substr(equals + 1), controls)) return error;
      }
    }
    position = end;
  }
  return std::nullopt;
}

// Reads the prompt of a chat request: every message's content, either a
// string or an array of {"type":"text","text":...} parts.
std::optional<RequestError> ScanMessages(const json::object& body, CompletionRequest& request) {
  const json::value* messages = body.if_contains("messages");
  if (messages == nullptr || !messages->is_array() || messages->as_array().empty()) {
    return RequestError{400, "'messages' must be a non-empty array", "messages"};
  }
  for (const json::value& message : messages->as_array()) {
    const json::value* content = message.is_object() ? message.as_object().if_contains("content")
                                                     : nullptr;
    if (content == nullptr || content->is_null()) continue;
    if (content->is_string()) {
      if (auto error = ScanPrompt(content->as_string(), request.prompt_tokens, request.controls)) {
        return error;
      }
    } else if (content->is_array()) {
      for (const json::value& part : content->as_array()) {
        const json::value* text = part.is_object() ? part.as_object().if_contains("text") : nullptr;
        if (text == nullptr || !text->is_string()) continue;
        if (auto error = ScanPrompt(text->as_string(), request.prompt_tokens, request.controls)) {
          return error;
        }
      }
    } else {
      return RequestError{400, "a message's 'content' must be a string or an array of parts",
                          "messages"};
    }
  }
  return std::nullopt;
}

// Reads the prompt of a text completion: a string or an array of strings.
std::optional<RequestError> ScanTextPrompt(const json::object& body, CompletionRequest& request) {
  const json::value* prompt = body.if_contains("prompt");
  if (prompt == nullptr || prompt->is_string()) {
    std::string_view text = prompt == nullptr ? std::string_view() : prompt->as_string();
    return ScanPrompt(text, request.prompt_tokens, request.controls);
  }
  if (prompt->is_array()) {
    for (const json::value& part : prompt->as_array()) {
      if (!part.is_string()) {
        return RequestError{400, "'prompt' must be a string or an array of strings", "prompt"};
      }
      if (auto error = ScanPrompt(part.as_string(), request.prompt_tokens, request.controls)) {
        return error;
      }
    }
    return std::nullopt;
  }
  return RequestError{400, "'prompt' must be a string or an array of strings", "prompt"};
}

std::optional<RequestError> ReadMaxTokens(const json::object& body, CompletionRequest& request) {
  const char* field = "max_tokens";
  const json::value* value = body.if_contains(field);
  if ((value == nullptr || value->is_null()) && request.endpoint == Endpoint::kChatCompletions) {
    field = "max_completion_tokens";
    value = body.if_contains(field);
  }
  if (value == nullptr || value->is_null()) {
    request.completion_tokens = kDefaultCompletionTokens;
    return std::nullopt;
  }
  if (!value->is_int64() && !value->is_uint64()) {
    return RequestError{400, std::string("'") + field + "' must be a whole number", field};
  }
  std::int64_t tokens = value->is_int64() ? value->as_int64() : -1;
  if (tokens < 1 || tokens > kMaxCompletionTokens) {
    return RequestError{400, std::string("'") + field + "' must be from 1 to " +
                                 std::to_string(kMaxCompletionTokens),
                        field};
  }
  request.completion_tokens = static_cast<std::uint32_t>(tokens);
  return std::nullopt;
}

std::optional<RequestError> ReadStreamFlags(const json::object& body, CompletionRequest& request) {
  if (const json::value* stream = body.if_contains("stream"); stream && !stream->is_null()) {
    if (!stream->is_bool()) return RequestError{400, "'stream' must be true or false", "stream"};
    request.stream = stream->as_bool();
  }
  if (const json::value* options = body.if_contains("stream_options");
      options && options->is_object()) {
    const json::value* usage = options->as_object().if_contains("include_usage");
    request.include_usage = usage != nullptr && usage->is_bool() && usage->as_bool();
  }
  return std::nullopt;
}

std::string_view ObjectName(Endpoint endpoint, bool chunk) {
  if (endpoint == Endpoint::kCompletions) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}

json::object Envelope(const CompletionRequest& request, const ResponseIdentity& identity,
                      bool chunk) {
  json::object envelope;
  envelope["id"] = identity.id;
  envelope["object"] = ObjectName(request.endpoint, chunk);
  envelope["created"] = identity.created;
  envelope["model"] = request.model;
  envelope["system_fingerprint"] = "fp_memward_mock";
  return envelope;
}

json::object Usage(const CompletionRequest& request) {
  return {{"prompt_tokens", request.prompt_tokens},
          {"completion_tokens", request.completion_tokens},
          {"total_tokens", std::uint64_t{request.prompt_tokens} + request.completion_tokens}};
}

// A choice of a stream chunk: chat uses a delta, text completions a text.
json::object StreamChoice(const CompletionRequest& request, std::string_view text,
                          bool with_role, json::value finish_reason) {
  json::object choice{{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason}};
  if (request.endpoint == Endpoint::kChatCompletions) {
    json::object delta;
    if (with_role) delta["role"] = "assistant";
    if (with_role || !text.empty()) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  return choice;
}

std::string Event(const json::object& chunk) {
  std::string event = "data: ";
  event += json::serialize(chunk);
  event += "\n\n";
  return event;
}

std::string_view ErrorType(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status < 500 ? "invalid_request_error" : "server_error";
  }
}

}  // namespace

std::variant<CompletionRequest, RequestError> ParseCompletionRequest(Endpoint endpoint,
                                                                    std::string_view body) {
  boost::system::error_code parse_error;
  json::value document = json::parse(body, parse_error);
  if (parse_error) {
    return RequestError{400, "the request body is not valid JSON: " + parse_error.message(), ""};
  }
  if (!document.is_object()) return RequestError{400, "the request body must be a JSON object", ""};
  const json::object& object = document.as_object();

  CompletionRequest request;
  request.endpoint = endpoint;
  const json::value* model = object.if_contains("model");
  if (model == nullptr || !model->is_string() || model->as_string().empty()) {
    return RequestError{400, "'model' must be a non-empty string", "model"};
  }
  request.model = model->as_string();

  std::optional<RequestError> error = endpoint == Endpoint::kChatCompletions
                                          ? ScanMessages(object, request)
                                          : ScanTextPrompt(object, request);
  if (!error) error = ReadMaxTokens(object, request);
  if (!error) error = ReadStreamFlags(object, request);
  if (error) return *error;
  request.seed = std::hash<std::string_view>{}(body);
  return request;
}

std::optional<RequestError> ApplyControlHeader(std::string_view name, std::string_view value,
                                               Controls& controls) {
  constexpr std::string_view kHeaderPrefix = "x-mock-";
  if (!name.starts_with(kHeaderPrefix)) return std::nullopt;
  return ApplyControl(name.substr(kHeaderPrefix.size()), value, controls);
}

std::string_view GeneratedToken(std::uint64_t seed, std::uint32_t index) {
  static constexpr std::array<std::string_view, 16> kWords = {
      " the",    " memory", " gateway", " request", " tenant", " stream", " budget", " cache",
      " arena",  " of",     " and",     " is",      " under",  " limit",  " token",  " so"};
  // A splitmix64 step: cheap, and spreads consecutive indexes well.
  std::uint64_t mixed = seed + 0x9E3779B97F4A7C15ull * (index + 1);
  mixed = (mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9ull;
  mixed = (mixed ^ (mixed >> 27)) * 0x94D049BB133111EBull;
  mixed ^= mixed >> 31;
  return kWords[mixed % kWords.size()];
}

ResponseIdentity MakeIdentity(Endpoint endpoint, std::uint64_t serial) {
  std::string prefix = endpoint == Endpoint::kChatCompletions ? "chatcmpl-mock-" : "cmpl-mock-";
  return {prefix + std::to_string(serial), static_cast<std::int64_t>(std::time(nullptr))};
}

std::string BuildCompletionBody(const CompletionRequest& request, const ResponseIdentity& identity) {
  std::string text;
  for (std::uint32_t i = 0; i < request.completion_tokens; ++i) {
    text += GeneratedToken(request.seed, i);
  }
  json::object choice{{"index", 0}, {"logprobs", nullptr}, {"finish_reason", "length"}};
  if (request.endpoint == Endpoint::kChatCompletions) {
    choice["message"] = json::object{{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  json::object body = Envelope(request, identity, /*chunk=*/false);
  body["choices"] = json::array{std::move(choice)};
  body["usage"] = Usage(request);
  return json::serialize(body);
}

std::string BuildRoleChunk(const CompletionRequest& request, const ResponseIdentity& identity) {
  json::object chunk = Envelope(request, identity, /*chunk=*/true);
  chunk["choices"] = json::array{StreamChoice(request, "", /*with_role=*/true, nullptr)};
  return Event(chunk);
}

std::string BuildTokenChunk(const CompletionRequest& request, const ResponseIdentity& identity,
                            std::uint32_t index) {
  json::object chunk = Envelope(request, identity, /*chunk=*/true);
  chunk["choices"] = json::array{
      StreamChoice(request, GeneratedToken(request.seed, index), /*with_role=*/false, nullptr)};
  return Event(chunk);
}

std::string BuildFinishChunk(const CompletionRequest& request, const ResponseIdentity& identity) {
  json::object chunk = Envelope(request, identity, /*chunk=*/true);
  chunk["choices"] = json::array{StreamChoice(request, "", /*with_role=*/false, "length")};
  return Event(chunk);
}

std::string BuildUsageChunk(const CompletionRequest& request, const ResponseIdentity& identity) {
  json::object chunk = Envelope(request, identity, /*chunk=*/true);
  chunk["choices"] = json::array{};
  chunk["usage"] = Usage(request);
  return Event(chunk);
}

std::string BuildErrorBody(int status, std::string_view message, std::string_view param) {
  json::object error{{"message", message},
                     {"type", ErrorType(status)},
                     {"param", param.empty() ? json::value(nullptr) : json::value(param)},
                     {"code", nullptr}};
  return json::serialize(json::object{{"error", std::move(error)}});
}

std::string BuildModelList(std::string_view comma_separated_models) {
  json::array models;
  std::size_t start = 0;
  while (start <= comma_separated_models.size()) {
    std::size_t comma = comma_separated_models.find(',', start);
    if (comma == std::string_view::npos) comma = comma_separated_models.size();
    std::string_view id = comma_separated_models.substr(start, comma - start);
    if (!id.empty()) {
      models.push_back(json::object{
          {"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "memward-mock"}});
    }
    start = comma + 1;
  }
  return json::serialize(json::object{{"object", "list"}, {"data", std::move(models)}});
}

}  // namespace memward::gateway::mock
