// An interpreter for the DWARF call frame instructions of one CIE and FDE
// (DWARF 4, section 6.4.2, and the GNU extensions in .eh_frame), limited to
// the rules of ordinary x86-64 frames (see frame_rule.h).
#ifndef MEMWARD_ACCOUNTING_CFI_PROGRAM_H_
#define MEMWARD_ACCOUNTING_CFI_PROGRAM_H_

#include <stdint.h>

#include "accounting/frame_rule.h"

namespace memward::accounting {

struct CfiProgram {
  const uint8_t* cie_begin = nullptr;  // the CIE's initial instructions
  const uint8_t* cie_end = nullptr;
  const uint8_t* fde_begin = nullptr;  // the FDE's instructions
  const uint8_t* fde_end = nullptr;
  uint64_t code_alignment = 1;
  int64_t data_alignment = -8;
  uintptr_t function_start = 0;  // the FDE's initial location
};

// Runs the CIE's and then the FDE's instructions up to the row that covers
// `address`, and returns that row's rule. Returns kNotCacheable for any
// instruction or rule outside the supported set: expressions, register
// rules for rbp or the return address other than "saved at CFA + n", a CFA
// on a register other than rsp or rbp, unknown opcodes, or truncated input.
FrameRule RunCfiProgram(const CfiProgram& program, uintptr_t address);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_CFI_PROGRAM_H_
