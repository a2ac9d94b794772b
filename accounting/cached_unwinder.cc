// The walk of the cached unwinder.
#include "accounting/cached_unwinder.h"

#include "accounting/eh_frame_lookup.h"
#include "accounting/frame_rule.h"
#include "accounting/frame_rule_cache.h"
#include "accounting/stack_bounds.h"
#include "alloc/macros.h"

namespace memward::accounting {

// The registers that a walk starts from.
struct CallerRegisters {
  uintptr_t return_address;  // into the function that called the reader
  uintptr_t stack_pointer;   // that function's rsp after the call returns
  uintptr_t frame_pointer;   // its rbp
};

}  // namespace memward::accounting

extern "C" __attribute__((visibility("hidden"))) void memward_read_caller_registers(
    memward::accounting::CallerRegisters* registers);

// Stores the return address, the stack pointer after the return, and rbp,
// all as they are in the calling function after the call. Its own CFI is the
// default row (CFA = rsp + 8), since it does not move rsp.
asm(R"(
  .pushsection memward_text, "ax", @progbits
  .globl memward_read_caller_registers
  .hidden memward_read_caller_registers
  .type memward_read_caller_registers, @function
memward_read_caller_registers:
  .cfi_startproc
  movq (%rsp), %rax
  movq %rax, 0(%rdi)
  leaq 8(%rsp), %rax
  movq %rax, 8(%rdi)
  movq %rbp, 16(%rdi)
  ret
  .cfi_endproc
  .size memward_read_caller_registers, . - memward_read_caller_registers
  .popsection
)");

namespace memward::accounting {
namespace {

// Returns the packed rule of `return_address` from the CFI, and caches it.
// Unsupported rules are cached too, so that later walks through them fall
// back without parsing.
MEMWARD_TEXT __attribute__((noinline)) uint64_t FillFrameRule(uintptr_t return_address) {
  CountFrameRuleMiss();
  uint64_t unloads = 0;
  uint64_t packed = PackFrameRule(LookUpFrameRule(return_address, unloads));
  DropFrameRulesAfterUnload(unloads);
  InsertFrameRule(return_address, packed);
  return packed;
}

}  // namespace

// Each step reads the return address at CFA - 8 and the saved rbp at
// CFA - rbp_offset. The rules guarantee (cfi_program.cc) that both lie at
// or above the CFA's base register and below the CFA. So checking that the
// base lies between the current rsp (which starts inside the stack and
// only grows) and the stack's end, and that the CFA is at most the stack's
// end, keeps every read inside the stack's mapping.
MEMWARD_TEXT __attribute__((noinline)) int WalkCachedFrames(uintptr_t* out, int max_frames,
                                                           int* found) {
  FrameRuleTable table = CurrentFrameRuleTable();
  if (table.keys == nullptr) return -1;
  CallerRegisters registers;
  memward_read_caller_registers(&registers);
  StackBounds bounds;
  if (!FindStackBounds(registers.stack_pointer, bounds)) return -1;
  const uintptr_t stack_end = bounds.high;

  uintptr_t pc = registers.return_address;
  uintptr_t sp = registers.stack_pointer;
  uintptr_t bp = registers.frame_pointer;
  uintptr_t* next = out;
  uintptr_t* const end = out + max_frames;
  while (next < end) {
    uint64_t rule = FindFrameRule(table, pc);
    if (rule == 0) rule = FillFrameRule(pc);
    if ((rule & kPackedStop) != 0) {
      if ((rule & kPackedNotCacheable) != 0) {
        if (found != nullptr) *found = static_cast<int>(next - out);
        return -1;
      }
      break;  // the thread's outermost frame
    }
    uintptr_t base = (rule & kPackedCfaFromRbp) != 0 ? bp : sp;
    uintptr_t cfa = base + PackedCfaOffset(rule);
    // One unsigned comparison rejects a base below sp and one past the end.
    if (base - sp > stack_end - sp || cfa > stack_end) break;
    uint32_t rbp_offset = PackedRbpOffset(rule);
    pc = *reinterpret_cast<const uintptr_t*>(cfa - 8);
    if (rbp_offset != 0) bp = *reinterpret_cast<const uintptr_t*>(cfa - rbp_offset);
    sp = cfa;
    if (pc == 0) break;
    *next++ = pc;
  }
  return static_cast<int>(next - out);
}

}  // namespace memward::accounting
