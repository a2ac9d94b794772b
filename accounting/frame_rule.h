// How to find a caller's frame from a return address on x86-64: the rule
// that the DWARF call frame information (.eh_frame) gives at that address,
// reduced to the forms that gcc and clang emit for ordinary frames.
#ifndef MEMWARD_ACCOUNTING_FRAME_RULE_H_
#define MEMWARD_ACCOUNTING_FRAME_RULE_H_

#include <stdint.h>

namespace memward::accounting {

enum class FrameRuleKind : uint8_t {
  kCfaFromRsp = 0,      // CFA = rsp + cfa_offset
  kCfaFromRbp = 1,      // CFA = rbp + cfa_offset
  kOutermost = 2,       // the return address is undefined: the stack ends here
  kNotCacheable = 3,    // any other rule: the capture falls back to libunwind
};

// The rule of one address. The return address is always at CFA - 8. The
// caller's rbp is at CFA - rbp_offset, or unchanged when rbp_offset is 0.
struct FrameRule {
  FrameRuleKind kind = FrameRuleKind::kNotCacheable;
  uint32_t cfa_offset = 0;
  uint16_t rbp_offset = 0;
};

// Largest offsets that the packed form below takes; larger ones are not
// cacheable.
constexpr uint32_t kMaxCfaOffset = (1u << 24) - 1;
constexpr uint32_t kMaxRbpOffset = 0xffff;

// The packed form of a rule, one nonzero word so that a cache entry is read
// with one atomic load and used without unpacking: the CFA offset in bits
// 0-31, the rbp offset in bits 32-47, and the flags below.
constexpr uint64_t kPackedCfaFromRbp = uint64_t{1} << 48;
constexpr uint64_t kPackedStop = uint64_t{1} << 49;           // outermost or not cacheable
constexpr uint64_t kPackedNotCacheable = uint64_t{1} << 50;
constexpr uint64_t kPackedValid = uint64_t{1} << 63;

inline uint64_t PackFrameRule(const FrameRule& rule) {
  uint64_t packed = kPackedValid;
  switch (rule.kind) {
    case FrameRuleKind::kCfaFromRbp:
      packed |= kPackedCfaFromRbp;
      [[fallthrough]];
    case FrameRuleKind::kCfaFromRsp:
      return packed | rule.cfa_offset | (static_cast<uint64_t>(rule.rbp_offset) << 32);
    case FrameRuleKind::kOutermost:
      return packed | kPackedStop;
    case FrameRuleKind::kNotCacheable:
      break;
  }
  return packed | kPackedStop | kPackedNotCacheable;
}

inline uint32_t PackedCfaOffset(uint64_t packed) { return static_cast<uint32_t>(packed); }
inline uint32_t PackedRbpOffset(uint64_t packed) { return static_cast<uint16_t>(packed >> 32); }

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_FRAME_RULE_H_
