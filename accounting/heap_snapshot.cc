#include "accounting/heap_snapshot.h"

namespace memward::accounting {

std::string HeapSnapshot::TenantName(uint32_t tenant) const {
  auto found = tenant_names.find(tenant);
  if (found != tenant_names.end() && !found->second.empty()) return found->second;
  return std::to_string(tenant);
}

uint32_t CountTrimmedFrames(const uintptr_t* frames, uint32_t depth, uintptr_t trim_address,
                            const Symbolizer& symbolizer) {
  if (trim_address == 0) return 0;
  int own_mapping = symbolizer.FindMapping(trim_address);
  if (own_mapping < 0) return 0;
  uint32_t trimmed = 0;
  // Return addresses minus one lie inside the calling instruction.
  while (trimmed < depth && frames[trimmed] != 0 &&
         symbolizer.FindMapping(frames[trimmed] - 1) == own_mapping) {
    trimmed++;
  }
  // A stack made only of memward's frames keeps them, so it is not lost.
  return trimmed == depth ? 0 : trimmed;
}

std::string FormatRequest(uint32_t slot, uint32_t generation) {
  return std::to_string(slot) + ":" + std::to_string(generation);
}

}  // namespace memward::accounting
