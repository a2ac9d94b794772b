// The difference of two heap profiles, by stack of function names, for the
// memward-profile tool: `memward-profile diff BEFORE AFTER`.
//
// Stacks are matched by their function names, not addresses, so profiles of
// two runs of a program (with different load addresses) compare.
#ifndef MEMWARD_ACCOUNTING_PROFILE_DIFF_H_
#define MEMWARD_ACCOUNTING_PROFILE_DIFF_H_

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <string_view>
#include <vector>

#include "accounting/profile_reader.h"

namespace memward::accounting {

struct StackDelta {
  std::vector<std::string> stack;  // function names, root first
  int64_t before = 0;
  int64_t after = 0;
};

// Sums both profiles' values of sample type `type` per stack, into `out`
// sorted by stack. Returns false with a message in `error` when a profile
// has no such sample type.
bool DiffProfiles(const DecodedProfile& before, const DecodedProfile& after,
                  std::string_view type, std::vector<StackDelta>* out, std::string* error);

// Returns "root;...;leaf BEFORE AFTER" lines, the input of differential
// flame graphs (flamegraph.pl reads two counts per line). Frame names have
// ';' replaced by ':' as in the folded export.
std::string FormatDiffFolded(const std::vector<StackDelta>& deltas);

// Returns a table of the `limit` innermost functions whose totals changed
// most, largest absolute change first: change, before, after, function.
std::string FormatDiffTop(const std::vector<StackDelta>& deltas, size_t limit);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PROFILE_DIFF_H_
