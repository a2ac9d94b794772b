#include "plan.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace memward::gateway::replay {
namespace {

// Inverse-CDF sampler over ranks 1..n with weights 1 / k^s.
class ZipfSampler {
 public:
  ZipfSampler(std::size_t n, double exponent) : cumulative_(n) {
    double total = 0;
    for (std::size_t k = 0; k < n; ++k) {
      total += 1.0 / std::pow(static_cast<double>(k + 1), exponent);
      cumulative_[k] = total;
    }
    for (double& value : cumulative_) value /= total;
  }

  // Returns a 0-based rank.
  std::size_t operator()(std::mt19937_64& generator) {
    double u = std::uniform_real_distribution<double>(0, 1)(generator);
    auto it = std::lower_bound(cumulative_.begin(), cumulative_.end(), u);
    return std::min<std::size_t>(it - cumulative_.begin(), cumulative_.size() - 1);
  }

 private:
  std::vector<double> cumulative_;
};

}  // namespace

std::vector<PlannedRequest> MakePlan(const std::vector<TraceRow>& rows, double time_compression,
                                     const PlanOptions& options) {
  std::mt19937_64 generator(options.seed);
  ZipfSampler zipf(std::max<std::size_t>(options.tenant_count, 1), options.zipf_exponent);
  std::bernoulli_distribution streams(options.stream_share);
  std::bernoulli_distribution repeats(options.repeat_share);
  // The last `repeat_window` new requests of each tenant.
  std::vector<std::vector<PlannedRequest>> history(std::max<std::size_t>(options.tenant_count, 1));

  std::vector<PlannedRequest> plan;
  plan.reserve(rows.size());
  for (const TraceRow& row : rows) {
    PlannedRequest request;
    request.send_at_s = row.arrival_s / time_compression;
    request.tenant = zipf(generator);
    bool stream = streams(generator);
    bool repeat = repeats(generator);
    auto& earlier = history[request.tenant];
    if (repeat && !earlier.empty()) {
      std::size_t pick = std::uniform_int_distribution<std::size_t>(0, earlier.size() - 1)(generator);
      const PlannedRequest& original = earlier[pick];
      request.repeat = true;
      request.stream = original.stream;
      request.prompt_seed = original.prompt_seed;
      request.prompt_tokens = original.prompt_tokens;
      request.max_tokens = original.max_tokens;
    } else {
      request.stream = stream;
      request.prompt_seed = generator();
      request.prompt_tokens = std::clamp<std::uint32_t>(row.context_tokens, 1, options.max_prompt_tokens);
      // The trace has rows with 0 generated tokens; an API request needs at
      // least 1.
      request.max_tokens = std::max<std::uint32_t>(row.generated_tokens, 1);
      earlier.push_back(request);
      if (earlier.size() > options.repeat_window) earlier.erase(earlier.begin());
    }
    plan.push_back(request);
  }
  return plan;
}

void AppendPrompt(const PlannedRequest& request, std::string& out) {
  // A word list long enough that prompts look like text to a tokenizer-free
  // mock; only the first word, made from the seed, makes prompts differ.
  static constexpr const char* kWords[] = {"please", "summarize", "the", "following", "memory",
                                           "report", "for", "tenant", "and", "list", "each",
                                           "request", "with", "its", "peak", "bytes"};
  out += "q";
  out += std::to_string(request.prompt_seed);
  std::uint64_t state = request.prompt_seed;
  for (std::uint32_t i = 1; i < request.prompt_tokens; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    out += ' ';
    out += kWords[state >> 60];
  }
}

std::string ChatRequestBody(const PlannedRequest& request, const std::string& model) {
  // Built by hand: the replayer builds one body per request at the send
  // rate, and the prompt words need no JSON escaping.
  std::string body;
  body.reserve(request.prompt_tokens * 8 + 200);
  body += R"({"model":")";
  body += model;
  body += R"(","messages":[{"role":"user","content":")";
  AppendPrompt(request, body);
  body += R"("}],"max_tokens":)";
  body += std::to_string(request.max_tokens);
  body += request.stream ? R"(,"stream":true,"stream_options":{"include_usage":true}})"
                         : R"(,"stream":false})";
  return body;
}

}  // namespace memward::gateway::replay
