// The OpenAI-compatible request and response bodies of the mock upstream:
// parsing a completion request, the test controls it carries, and the JSON
// of complete responses, SSE chunks and errors.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace memward::gateway::mock {

enum class Endpoint { kChatCompletions, kCompletions };

// Behaviour that a test requests for one request, through x-mock-* headers or
// through "mock-NAME=VALUE" words in the prompt (the second form passes
// through a gateway that forwards only the body). A header wins over a word.
struct Controls {
  // Respond with this HTTP status and an OpenAI error body instead of a
  // completion (400 to 599).
  std::optional<int> fail_status;
  // Extra wait before the response headers are sent.
  std::chrono::milliseconds delay{0};
  // Streaming only: close the connection without the final chunk after this
  // many tokens, as a crashed model server would.
  std::optional<std::uint32_t> drop_after_tokens;
  // Pace of this request, replacing the server's --tokens_per_second.
  std::optional<double> tokens_per_second;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChatCompletions;
  std::string model;
  // One token per whitespace-separated word of the prompt (all message
  // contents for chat). Trace replayers build prompts of N words.
  std::uint32_t prompt_tokens = 0;
  // max_tokens, or max_completion_tokens for chat; the mock always
  // generates exactly this many tokens.
  std::uint32_t completion_tokens = 0;
  bool stream = false;
  // stream_options.include_usage: a last chunk with usage and no choices.
  bool include_usage = false;
  // Seeds the generated words, so equal requests get equal text.
  std::uint64_t seed = 0;
  Controls controls;
};

// An invalid request: the HTTP status and the message for the error body.
struct RequestError {
  int status = 400;
  std::string message;
  // OpenAI's `param`: the field at fault, or empty.
  std::string param;
};

// Limits on what a request may ask for.
inline constexpr std::uint32_t kMaxCompletionTokens = 1 << 20;
inline constexpr std::uint32_t kDefaultCompletionTokens = 16;
inline constexpr std::chrono::milliseconds kMaxDelay = std::chrono::minutes(10);

// Parses a request body. Controls from the prompt are filled in here;
// ApplyControlHeader overrides them afterwards.
std::variant<CompletionRequest, RequestError> ParseCompletionRequest(Endpoint endpoint,
                                                                    std::string_view body);

// Applies one x-mock-* header (name in lower case) to `controls`. Returns an
// error for an invalid value; ignores names it does not know.
std::optional<RequestError> ApplyControlHeader(std::string_view name, std::string_view value,
                                               Controls& controls);

// The word generated at `index` (0-based) of a completion, with its leading
// space, as a tokenizer of English text would split it.
std::string_view GeneratedToken(std::uint64_t seed, std::uint32_t index);

// Identity of one response, shared by all of its chunks.
struct ResponseIdentity {
  std::string id;        // "chatcmpl-mock-7" or "cmpl-mock-7"
  std::int64_t created;  // Unix seconds
};
ResponseIdentity MakeIdentity(Endpoint endpoint, std::uint64_t serial);

// The whole non-streamed response, with usage.
std::string BuildCompletionBody(const CompletionRequest& request, const ResponseIdentity& identity);

// One SSE event ("data: {...}\n\n") of a stream. The chat stream starts with
// a role chunk; each token gets a chunk; the finish chunk carries
// finish_reason; the usage chunk has no choices.
std::string BuildRoleChunk(const CompletionRequest& request, const ResponseIdentity& identity);
std::string BuildTokenChunk(const CompletionRequest& request, const ResponseIdentity& identity,
                            std::uint32_t index);
std::string BuildFinishChunk(const CompletionRequest& request, const ResponseIdentity& identity);
std::string BuildUsageChunk(const CompletionRequest& request, const ResponseIdentity& identity);
inline constexpr std::string_view kDoneEvent = "data: [DONE]\n\n";

// OpenAI's error body: {"error":{"message","type","param","code"}}.
std::string BuildErrorBody(int status, std::string_view message, std::string_view param = {});

// GET /v1/models for a comma-separated list of model ids.
std::string BuildModelList(std::string_view comma_separated_models);

}  // namespace memward::gateway::mock
