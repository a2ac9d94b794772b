// Finds the frame rule of a return address in the .eh_frame of the loaded
// object that contains it, through the binary search table of its
// .eh_frame_hdr (PT_GNU_EH_FRAME).
#ifndef MEMWARD_ACCOUNTING_EH_FRAME_LOOKUP_H_
#define MEMWARD_ACCOUNTING_EH_FRAME_LOOKUP_H_

#include <link.h>
#include <stddef.h>
#include <stdint.h>

#include "accounting/frame_rule.h"

namespace memward::accounting {

// Sets `unloads` to the loader's count of unloaded objects (dlpi_subs), as
// a dl_iterate_phdr callback receives it with `object` and `size`. Returns
// false, and leaves `unloads` unchanged, when the loader's dl_phdr_info
// does not contain the count.
inline bool ReadUnloadCount(const dl_phdr_info& object, size_t size, uint64_t& unloads) {
  if (size < offsetof(dl_phdr_info, dlpi_subs) + sizeof(object.dlpi_subs)) return false;
  unloads = object.dlpi_subs;
  return true;
}

// Returns the rule of the frame whose return address is `return_address`.
// The lookup is at return_address - 1, so that a call at the end of a
// function finds its own function. Returns kNotCacheable when no loaded object or no FDE contains
// the address, or when the table or the CFI is of a form that is not
// supported. Holds the dynamic loader's lock (dl_iterate_phdr) while it
// reads, so the caller must hold no lock that a thread inside dlopen or
// dlclose could wait for. Uses no heap memory.
// `unloads` receives the loader's count of unloaded objects (dlpi_subs),
// or is left unchanged when the loader does not report it.
//
// With kFile the tables are read from the object's file, so that no page
// of them joins the host's RSS. An object whose file cannot be used is read
// through its mapping (accounting/object_file.h). A lookup in libc took
// about 10 us from the file and 0.2 us through a mapping whose pages were
// resident (sampler_micro's BM_FrameRuleLookup, 2-CPU AMD EPYC VM).
enum class TableSource { kFile, kMapping };
FrameRule LookUpFrameRule(uintptr_t return_address, uint64_t& unloads, TableSource source);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_EH_FRAME_LOOKUP_H_
