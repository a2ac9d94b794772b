// The hash of a captured stack, with which the sample table finds the call
// site of a stack. The unwinders compute it frame by frame while they walk,
// so it costs no second pass over the frames. Each step is one xor and one
// multiplication on the previous value, a chain of about 4 cycles per
// frame, which runs beside the walk's longer chain of dependent loads.
#ifndef MEMWARD_ACCOUNTING_STACK_HASH_H_
#define MEMWARD_ACCOUNTING_STACK_HASH_H_

#include <stdint.h>

namespace memward::accounting {

inline constexpr uint64_t kStackHashSeed = 0x243f6a8885a308d3ull;

// Adds the next frame, outer to `hash`'s frames, to the running hash.
inline uint64_t AddFrameToStackHash(uint64_t hash, uintptr_t frame) {
  return (hash ^ frame) * 0x9e3779b97f4a7c15ull;
}

// Mixes the depth into a running hash and spreads every bit into the low
// bits, which index the site table (MurmurHash3's 64-bit finalizer).
inline uint64_t FinishStackHash(uint64_t hash, uint32_t depth) {
  hash ^= depth;
  hash ^= hash >> 33;
  hash *= 0xff51afd7ed558ccdull;
  hash ^= hash >> 33;
  hash *= 0xc4ceb9fe1a85ec53ull;
  return hash ^ (hash >> 33);
}

// Returns the hash of `depth` frames, innermost first: the value that the
// unwinders return with a capture of these frames.
inline uint64_t HashStack(const uintptr_t* frames, uint32_t depth) {
  uint64_t hash = kStackHashSeed;
  for (uint32_t i = 0; i < depth; i++) hash = AddFrameToStackHash(hash, frames[i]);
  return FinishStackHash(hash, depth);
}

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_STACK_HASH_H_
