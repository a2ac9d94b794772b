// The walk of the cached unwinder.
#include "accounting/cached_unwinder.h"

#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <time.h>

#include <atomic>

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

// sample_tables_from_file, set before the first sample.
std::atomic<bool> g_tables_from_file{false};

// CLOCK_MONOTONIC_COARSE time in nanoseconds at which the next loader
// check is due.
std::atomic<uint64_t> g_next_loader_check_ns{0};

// The loader's count of unloaded objects, as the first object reports it.
struct UnloadCount {
  uint64_t unloads = 0;
  bool known = false;
};

// dl_iterate_phdr's callback for the loader check: reads the count from
// the first object and stops.
int ReadUnloadCountOfFirst(dl_phdr_info* object, size_t size, void* data) {
  auto* count = static_cast<UnloadCount*>(data);
  count->known = ReadUnloadCount(*object, size, count->unloads);
  return 1;
}

// Returns the packed rule of `return_address` from the CFI, and caches it.
// Unsupported rules are cached too, so that later walks through them fall
// back without parsing.
MEMWARD_TEXT __attribute__((noinline)) uint64_t FillFrameRule(uintptr_t return_address) {
  CountFrameRuleMiss();
  uint64_t unloads = 0;
  // A process whose rules no longer fit keeps missing: it reads through the
  // mappings, which are faster once their pages are resident.
  const bool from_file =
      g_tables_from_file.load(std::memory_order_relaxed) && !FrameRulesWereDropped();
  const TableSource source = from_file ? TableSource::kFile : TableSource::kMapping;
  uint64_t packed = PackFrameRule(LookUpFrameRule(return_address, unloads, source));
  DropFrameRulesAfterUnload(unloads);
  InsertFrameRule(return_address, packed);
  return packed;
}

// Each step reads the return address at CFA - 8 and the saved rbp at
// CFA - rbp_offset. The rules guarantee (cfi_program.cc) that both lie at
// or above the CFA's base register and below the CFA. So checking that the
// base lies between the current rsp (which starts inside the stack and
// only grows) and the stack's end, and that the CFA is at most the stack's
// end, keeps every read inside the stack's mapping.
MEMWARD_TEXT MEMWARD_ALWAYS_INLINE int ContinueWalk(FrameCollector& frames, CachedWalk& walk,
                                                    RuleMisses misses) {
  FrameRuleTable table = CurrentFrameRuleTable();
  if (table.keys == nullptr) return kWalkFallBack;
  // Local copies, so that the walk's state stays in registers: through the
  // references, each store of a frame could change it.
  FrameCollector collector = frames;
  uintptr_t pc = walk.return_address;
  uintptr_t sp = walk.stack_pointer;
  uintptr_t bp = walk.frame_pointer;
  const uintptr_t stack_end = walk.stack_end;
  int status = 0;
  while (!collector.Full()) {
    uint64_t rule = FindFrameRule(table, pc);
    if (MEMWARD_UNLIKELY(rule == 0)) {
      if (misses == RuleMisses::kStop) {
        status = kWalkRuleMissed;
        break;
      }
      rule = FillFrameRule(pc);
    }
    if ((rule & kPackedStop) != 0) {
      if ((rule & kPackedNotCacheable) != 0) status = kWalkFallBack;
      break;  // otherwise the thread's outermost frame
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
    collector.Add(pc);
  }
  frames = collector;
  walk.return_address = pc;
  walk.stack_pointer = sp;
  walk.frame_pointer = bp;
  return status != 0 ? status : static_cast<int>(collector.depth());
}

}  // namespace

MEMWARD_TEXT __attribute__((noinline)) int WalkCachedFrames(FrameCollector& frames,
                                                            CachedWalk& walk, RuleMisses misses) {
  CallerRegisters registers;
  memward_read_caller_registers(&registers);
  StackBounds bounds;
  if (!FindStackBounds(registers.stack_pointer, bounds)) return kWalkFallBack;
  walk.return_address = registers.return_address;
  walk.stack_pointer = registers.stack_pointer;
  walk.frame_pointer = registers.frame_pointer;
  walk.stack_end = bounds.high;
  return ContinueWalk(frames, walk, misses);
}

MEMWARD_TEXT __attribute__((noinline)) int ResumeCachedWalk(FrameCollector& frames,
                                                            CachedWalk& walk, RuleMisses misses) {
  return ContinueWalk(frames, walk, misses);
}

void SetFrameTablesFromFile(bool from_file) {
  g_tables_from_file.store(from_file, std::memory_order_relaxed);
}

MEMWARD_TEXT bool ClaimLoaderCheck() {
  timespec now;
  const int saved_errno = errno;
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &now) != 0) {
    errno = saved_errno;  // a seccomp filter may make the call fail
    return false;
  }
  const uint64_t now_ns = static_cast<uint64_t>(now.tv_sec) * 1'000'000'000 +
                          static_cast<uint64_t>(now.tv_nsec);
  uint64_t due = g_next_loader_check_ns.load(std::memory_order_relaxed);
  if (now_ns < due) return false;
  return g_next_loader_check_ns.compare_exchange_strong(due, now_ns + kLoaderCheckIntervalNs,
                                                        std::memory_order_relaxed);
}

MEMWARD_TEXT void DropFrameRulesIfObjectsUnloaded() {
  UnloadCount count;
  dl_iterate_phdr(ReadUnloadCountOfFirst, &count);
  if (count.known) DropFrameRulesAfterUnload(count.unloads);
}

}  // namespace memward::accounting
