// The call frame instruction interpreter. It runs on a cache miss, inside
// malloc, so it uses no heap memory and no locks.
#include "accounting/cfi_program.h"

#include "accounting/dwarf_reader.h"
#include "alloc/macros.h"

namespace memward::accounting {
namespace {

// DWARF register numbers of x86-64, from the System V psABI's mapping.
constexpr uint64_t kRegisterRbp = 6;
constexpr uint64_t kRegisterRsp = 7;
constexpr uint64_t kRegisterReturnAddress = 16;

// Depth of DW_CFA_remember_state that is kept; deeper nesting is rejected.
constexpr int kMaxRememberedRows = 4;

// The columns of a row that the walk needs.
struct Row {
  uint64_t cfa_register = kRegisterRsp;
  int64_t cfa_offset = 8;
  int64_t rbp_saved_at = 0;  // offset from the CFA; 0 means unchanged
  bool return_address_undefined = false;
};

struct Interpreter {
  DwarfReader reader;
  Row row;
  Row initial;  // the row after the CIE's instructions, for DW_CFA_restore
  Row remembered[kMaxRememberedRows];
  int remembered_count = 0;
  uint64_t location = 0;
  uint64_t target = 0;
  const CfiProgram* program = nullptr;
  bool failed = false;
  bool done = false;  // the next row starts past the target
};

void Advance(Interpreter& state, uint64_t delta) {
  uint64_t next = state.location + delta * state.program->code_alignment;
  if (next > state.target) {
    state.done = true;
  } else {
    state.location = next;
  }
}

// A register saved at CFA + `offset` (DW_CFA_offset and its extended form).
void SetSaved(Interpreter& state, uint64_t reg, int64_t offset) {
  if (reg == kRegisterRbp) {
    if (offset >= 0 || -offset > static_cast<int64_t>(kMaxRbpOffset)) state.failed = true;
    state.row.rbp_saved_at = offset;
  } else if (reg == kRegisterReturnAddress && offset != -8) {
    state.failed = true;
  }
}

void Restore(Interpreter& state, uint64_t reg) {
  if (reg == kRegisterRbp) state.row.rbp_saved_at = state.initial.rbp_saved_at;
  if (reg == kRegisterReturnAddress) {
    state.row.return_address_undefined = state.initial.return_address_undefined;
  }
}

void SetCfaRegister(Interpreter& state, uint64_t reg) {
  if (reg != kRegisterRsp && reg != kRegisterRbp) state.failed = true;
  state.row.cfa_register = reg;
}

void RememberState(Interpreter& state) {
  if (state.remembered_count == kMaxRememberedRows) {
    state.failed = true;
    return;
  }
  state.remembered[state.remembered_count++] = state.row;
}

void RestoreState(Interpreter& state) {
  if (state.remembered_count == 0) {
    state.failed = true;
    return;
  }
  // The whole row comes back, the CFA rule included, which gcc's epilogues
  // (remember_state before the CFA moves back to rsp) need.
  state.row = state.remembered[--state.remembered_count];
}

// Register rules that only matter for rbp and the return address.
void SetUndefined(Interpreter& state, uint64_t reg) {
  if (reg == kRegisterReturnAddress) state.row.return_address_undefined = true;
  if (reg == kRegisterRbp) state.failed = true;
}

void SetSameValue(Interpreter& state, uint64_t reg) {
  if (reg == kRegisterRbp) state.row.rbp_saved_at = 0;
  if (reg == kRegisterReturnAddress) state.failed = true;
}

void SetInOtherRegister(Interpreter& state, uint64_t reg) {
  if (reg == kRegisterRbp || reg == kRegisterReturnAddress) state.failed = true;
}

// Runs one extended opcode (the low six bits are zero in the first byte).
void RunExtended(Interpreter& state, uint8_t opcode) {
  DwarfReader& in = state.reader;
  int64_t factor = state.program->data_alignment;
  switch (opcode) {
    case 0x00:  // DW_CFA_nop
      break;
    case 0x02:  // DW_CFA_advance_loc1
      Advance(state, in.ReadU8());
      break;
    case 0x03:  // DW_CFA_advance_loc2
      Advance(state, in.ReadU16());
      break;
    case 0x04:  // DW_CFA_advance_loc4
      Advance(state, in.ReadU32());
      break;
    case 0x05: {  // DW_CFA_offset_extended
      uint64_t reg = in.ReadUleb();
      SetSaved(state, reg, static_cast<int64_t>(in.ReadUleb()) * factor);
      break;
    }
    case 0x06:  // DW_CFA_restore_extended
      Restore(state, in.ReadUleb());
      break;
    case 0x07:  // DW_CFA_undefined
      SetUndefined(state, in.ReadUleb());
      break;
    case 0x08:  // DW_CFA_same_value
      SetSameValue(state, in.ReadUleb());
      break;
    case 0x09: {  // DW_CFA_register
      SetInOtherRegister(state, in.ReadUleb());
      in.ReadUleb();
      break;
    }
    case 0x0a:  // DW_CFA_remember_state
      RememberState(state);
      break;
    case 0x0b:  // DW_CFA_restore_state
      RestoreState(state);
      break;
    case 0x0c: {  // DW_CFA_def_cfa
      SetCfaRegister(state, in.ReadUleb());
      state.row.cfa_offset = static_cast<int64_t>(in.ReadUleb());
      break;
    }
    case 0x0d:  // DW_CFA_def_cfa_register
      SetCfaRegister(state, in.ReadUleb());
      break;
    case 0x0e:  // DW_CFA_def_cfa_offset
      state.row.cfa_offset = static_cast<int64_t>(in.ReadUleb());
      break;
    case 0x2e:  // DW_CFA_GNU_args_size: only matters for landing pads
      in.ReadUleb();
      break;
    default:
      // DW_CFA_set_loc, expressions, the signed (_sf) and val_ forms,
      // DW_CFA_GNU_negative_offset_extended and unknown opcodes.
      state.failed = true;
      break;
  }
}

void RunOne(Interpreter& state) {
  uint8_t byte = state.reader.ReadU8();
  uint8_t operand = byte & 0x3f;
  switch (byte >> 6) {
    case 1:  // DW_CFA_advance_loc
      Advance(state, operand);
      break;
    case 2:  // DW_CFA_offset
      SetSaved(state, operand,
               static_cast<int64_t>(state.reader.ReadUleb()) * state.program->data_alignment);
      break;
    case 3:  // DW_CFA_restore
      Restore(state, operand);
      break;
    default:
      RunExtended(state, operand);
      break;
  }
}

// Runs instructions from `begin` to `end` until the row past the target.
void RunInstructions(Interpreter& state, const uint8_t* begin, const uint8_t* end) {
  state.reader = DwarfReader(begin, end);
  while (!state.failed && !state.done && !state.reader.AtEnd()) {
    RunOne(state);
    if (state.reader.Overran()) state.failed = true;
  }
}

// Converts the row to a rule whose reads the walk can bound cheaply. The
// return address at CFA - 8 and the saved rbp at CFA - 8 or lower must lie
// at or above the CFA's base register, which cached_unwinder.cc relies on.
FrameRule ToFrameRule(const Row& row) {
  FrameRule rule;
  if (row.return_address_undefined) {
    rule.kind = FrameRuleKind::kOutermost;
    return rule;
  }
  int64_t rbp_offset = -row.rbp_saved_at;
  if (row.cfa_offset < 8 || row.cfa_offset > static_cast<int64_t>(kMaxCfaOffset)) return rule;
  if (rbp_offset != 0 && (rbp_offset < 8 || rbp_offset > row.cfa_offset)) return rule;
  rule.kind = row.cfa_register == kRegisterRbp ? FrameRuleKind::kCfaFromRbp
                                               : FrameRuleKind::kCfaFromRsp;
  rule.cfa_offset = static_cast<uint32_t>(row.cfa_offset);
  rule.rbp_offset = static_cast<uint16_t>(rbp_offset);
  return rule;
}

}  // namespace

MEMWARD_TEXT FrameRule RunCfiProgram(const CfiProgram& program, uintptr_t address) {
  Interpreter state;
  state.program = &program;
  state.location = program.function_start;
  state.target = address;
  // The CIE's instructions describe the row at the function's start and
  // contain no advances in what gcc and clang emit.
  RunInstructions(state, program.cie_begin, program.cie_end);
  if (state.done) state.failed = true;
  state.initial = state.row;
  state.remembered_count = 0;
  if (!state.failed) RunInstructions(state, program.fde_begin, program.fde_end);
  if (state.failed) return FrameRule{};
  return ToFrameRule(state.row);
}

}  // namespace memward::accounting
