// Folded stacks for flame graphs (the input format of Brendan Gregg's
// flamegraph.pl and of speedscope): one line per distinct stack, its frames
// root first joined by ';', then a space and the stack's value.
//
// Frames are demangled function names (see SymbolizedFrame::DisplayName).
// C++ names can contain spaces, which the format allows because the value is
// the text after the last space; a ';' or a line break inside a name would
// split it, so each becomes ':' or a space. Stacks whose names are equal
// (two call sites in one function) are merged, and lines with a value that
// rounds to 0 are left out.
#ifndef MEMWARD_ACCOUNTING_PROFILE_FOLDED_H_
#define MEMWARD_ACCOUNTING_PROFILE_FOLDED_H_

#include <stdint.h>

#include <optional>
#include <string>
#include <string_view>

#include "accounting/heap_snapshot.h"
#include "accounting/symbolizer.h"

namespace memward::accounting {

// The value each folded line carries: a pprof sample type.
enum class FoldedValue { kInuseSpace, kInuseObjects, kAllocSpace, kAllocObjects };

// Parses "inuse_space", "inuse_objects", "alloc_space" or "alloc_objects".
std::optional<FoldedValue> ParseFoldedValue(std::string_view name);

// Returns the folded lines, sorted, each ending in '\n'. Frames in the
// mapping of `trim_address` are dropped as in CountTrimmedFrames.
std::string WriteFolded(const HeapSnapshot& snapshot, Symbolizer* symbolizer, FoldedValue value,
                        uintptr_t trim_address);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_PROFILE_FOLDED_H_
