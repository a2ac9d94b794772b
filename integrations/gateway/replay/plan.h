// The replay plan: what each trace row turns into, namely a tenant drawn
// from a Zipf distribution, a streamed or non-streamed request, and either a
// new prompt or a repeat of one the same tenant sent before.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trace.h"

namespace memward::gateway::replay {

struct PlanOptions {
  // Tenants in rank order: rank 1 (index 0) is drawn most often.
  std::size_t tenant_count = 1;
  // Zipf exponent s: P(rank k) is proportional to 1 / k^s. 0 is uniform.
  double zipf_exponent = 1.1;
  // Share of requests sent with "stream": true, from 0 to 1.
  double stream_share = 0.7;
  // Share of requests that repeat an earlier request of the same tenant
  // (same prompt, max_tokens and stream flag), from 0 to 1, so a response
  // cache can hit.
  double repeat_share = 0.1;
  // Earlier requests per tenant that a repeat is drawn from.
  std::size_t repeat_window = 32;
  // Largest prompt, in words; longer trace prompts are cut to it.
  std::uint32_t max_prompt_tokens = 16384;
  std::uint64_t seed = 1;
};

struct PlannedRequest {
  // Seconds after the start of the replay, already divided by the time
  // compression.
  double send_at_s = 0;
  std::size_t tenant = 0;
  bool stream = false;
  // Whether this request repeats an earlier one; its prompt_seed, tokens
  // and stream flag are then the earlier request's.
  bool repeat = false;
  std::uint64_t prompt_seed = 0;
  std::uint32_t prompt_tokens = 0;
  std::uint32_t max_tokens = 0;
};

// Draws a plan from `rows`. Equal inputs give an equal plan.
std::vector<PlannedRequest> MakePlan(const std::vector<TraceRow>& rows, double time_compression,
                                     const PlanOptions& options);

// Appends the prompt of `request` to `out`: prompt_tokens words, each one
// token to the mock upstream. Different seeds give different first words,
// so only repeats are equal.
void AppendPrompt(const PlannedRequest& request, std::string& out);

// The JSON body of a chat completion request for `request`.
std::string ChatRequestBody(const PlannedRequest& request, const std::string& model);

}  // namespace memward::gateway::replay
