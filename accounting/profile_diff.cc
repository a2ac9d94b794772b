#include "accounting/profile_diff.h"

#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <map>

namespace memward::accounting {
namespace {

// Adds each sample's value of column `index` under its root-first stack.
void Accumulate(const DecodedProfile& profile, int index, bool into_after,
                std::map<std::vector<std::string>, StackDelta>* stacks) {
  for (const DecodedSample& sample : profile.samples) {
    std::vector<std::string> names = profile.StackNames(sample);
    std::reverse(names.begin(), names.end());
    StackDelta& delta = (*stacks)[names];
    delta.stack = names;
    int64_t value = sample.values[static_cast<size_t>(index)];
    (into_after ? delta.after : delta.before) += value;
  }
}

std::string SanitizeFrame(std::string name) {
  std::replace(name.begin(), name.end(), ';', ':');
  std::replace(name.begin(), name.end(), '\n', ' ');
  return name;
}

}  // namespace

bool DiffProfiles(const DecodedProfile& before, const DecodedProfile& after,
                  std::string_view type, std::vector<StackDelta>* out, std::string* error) {
  int before_index = before.SampleIndex(type);
  int after_index = after.SampleIndex(type);
  if (before_index < 0 || after_index < 0) {
    *error = "sample type '" + std::string(type) + "' not found in " +
             (before_index < 0 ? "the first" : "the second") +
             " profile; memward's heap profiles have alloc_objects, alloc_space, "
             "inuse_objects and inuse_space";
    return false;
  }
  std::map<std::vector<std::string>, StackDelta> stacks;
  Accumulate(before, before_index, false, &stacks);
  Accumulate(after, after_index, true, &stacks);
  out->clear();
  for (auto& [stack, delta] : stacks) {
    if (delta.before != 0 || delta.after != 0) out->push_back(std::move(delta));
  }
  return true;
}

std::string FormatDiffFolded(const std::vector<StackDelta>& deltas) {
  std::string out;
  for (const StackDelta& delta : deltas) {
    if (delta.stack.empty()) continue;
    for (size_t i = 0; i < delta.stack.size(); i++) {
      if (i > 0) out.push_back(';');
      out += SanitizeFrame(delta.stack[i]);
    }
    out += ' ' + std::to_string(delta.before) + ' ' + std::to_string(delta.after) + '\n';
  }
  return out;
}

std::string FormatDiffTop(const std::vector<StackDelta>& deltas, size_t limit) {
  std::map<std::string, std::pair<int64_t, int64_t>> functions;
  for (const StackDelta& delta : deltas) {
    if (delta.stack.empty()) continue;
    auto& totals = functions[delta.stack.back()];
    totals.first += delta.before;
    totals.second += delta.after;
  }
  std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> sorted(functions.begin(),
                                                                          functions.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return llabs(a.second.second - a.second.first) > llabs(b.second.second - b.second.first);
  });
  std::string out = "      change       before        after  function\n";
  char line[96];
  for (size_t i = 0; i < sorted.size() && i < limit; i++) {
    const auto& [name, totals] = sorted[i];
    if (totals.first == totals.second) break;
    snprintf(line, sizeof(line), "%+12lld %12lld %12lld  ",
             static_cast<long long>(totals.second - totals.first),
             static_cast<long long>(totals.first), static_cast<long long>(totals.second));
    out += line + name + '\n';
  }
  return out;
}

}  // namespace memward::accounting
