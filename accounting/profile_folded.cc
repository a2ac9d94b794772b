#include "accounting/profile_folded.h"

#include <math.h>

#include <map>

namespace memward::accounting {
namespace {

std::string SanitizeFrame(std::string name) {
  for (char& c : name) {
    if (c == ';') c = ':';
    if (c == '\n' || c == '\r') c = ' ';
  }
  return name;
}

// Returns the frames of a stack root first, joined by ';'.
std::string FoldStack(const uintptr_t* frames, uint32_t depth, uintptr_t trim_address,
                      Symbolizer* symbolizer) {
  uint32_t first = CountTrimmedFrames(frames, depth, trim_address, *symbolizer);
  uint32_t end = first;
  while (end < depth && frames[end] != 0) end++;
  std::string folded;
  for (uint32_t i = end; i > first; i--) {
    const SymbolizedFrame& frame = symbolizer->Lookup(frames[i - 1]);
    if (!folded.empty()) folded.push_back(';');
    folded += SanitizeFrame(frame.DisplayName(symbolizer->mappings()));
  }
  return folded;
}

}  // namespace

std::optional<FoldedValue> ParseFoldedValue(std::string_view name) {
  if (name == "inuse_space") return FoldedValue::kInuseSpace;
  if (name == "inuse_objects") return FoldedValue::kInuseObjects;
  if (name == "alloc_space") return FoldedValue::kAllocSpace;
  if (name == "alloc_objects") return FoldedValue::kAllocObjects;
  return std::nullopt;
}

std::string WriteFolded(const HeapSnapshot& snapshot, Symbolizer* symbolizer, FoldedValue value,
                        uintptr_t trim_address) {
  std::map<std::string, double> totals;
  if (value == FoldedValue::kInuseSpace || value == FoldedValue::kInuseObjects) {
    for (const SampleRecord& record : snapshot.live) {
      double weight =
          value == FoldedValue::kInuseSpace ? record.weight_bytes : record.weight_objects;
      totals[FoldStack(record.frames, record.depth, trim_address, symbolizer)] += weight;
    }
  } else {
    for (const SiteTotals& site : snapshot.sites) {
      double weight = value == FoldedValue::kAllocSpace ? site.alloc_weight_bytes
                                                        : site.alloc_weight_objects;
      totals[FoldStack(site.frames, site.depth, trim_address, symbolizer)] += weight;
    }
  }
  std::string out;
  for (const auto& [stack, total] : totals) {
    long long rounded = llround(total);
    if (rounded <= 0 || stack.empty()) continue;
    out += stack;
    out += ' ';
    out += std::to_string(rounded);
    out += '\n';
  }
  return out;
}

}  // namespace memward::accounting
