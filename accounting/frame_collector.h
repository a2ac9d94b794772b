// The frames that a capture keeps, collected as an unwinder walks them.
// memward's own innermost frames (those in the memward_text section: the
// malloc entry point, the sampler and the unwinder) are left out. At most a
// maximum is stored, and the stored frames are hashed on the way
// (stack_hash.h).
#ifndef MEMWARD_ACCOUNTING_FRAME_COLLECTOR_H_
#define MEMWARD_ACCOUNTING_FRAME_COLLECTOR_H_

#include <stdint.h>

#include "accounting/stack_hash.h"
#include "alloc/macros.h"

// The bounds of the memward_text section, defined by the linker.
extern "C" {
extern const char __start_memward_text[] __attribute__((visibility("hidden")));
extern const char __stop_memward_text[] __attribute__((visibility("hidden")));
}

namespace memward::accounting {

inline bool InMemwardText(uintptr_t address) {
  return address >= reinterpret_cast<uintptr_t>(__start_memward_text) &&
         address < reinterpret_cast<uintptr_t>(__stop_memward_text);
}

// A walk's result: the frames stored and their hash. A walk keeps its
// collector in a local variable, so that the fields stay in registers:
// through a pointer, each store of a frame could change them.
class FrameCollector {
 public:
  FrameCollector(uintptr_t* out, uint32_t max_frames)
      : first_(out), next_(out), end_(out + max_frames) {}

  bool Full() const { return next_ == end_; }

  // Stores `frame` and adds it to the hash, unless no frame is stored yet
  // and it lies in memward's text. The caller checks Full() first.
  MEMWARD_ALWAYS_INLINE void Add(uintptr_t frame) {
    if (MEMWARD_UNLIKELY(next_ == first_) && InMemwardText(frame)) {
      memward_frames_++;
      return;
    }
    *next_++ = frame;
    hash_ = AddFrameToStackHash(hash_, frame);
  }

  uint32_t depth() const { return static_cast<uint32_t>(next_ - first_); }
  // HashStack of the stored frames.
  uint64_t hash() const { return FinishStackHash(hash_, depth()); }
  // Frames left out because they lie in memward's text.
  uint32_t memward_frames() const { return memward_frames_; }

 private:
  uintptr_t* first_;
  uintptr_t* next_;
  uintptr_t* end_;
  uint64_t hash_ = kStackHashSeed;
  uint32_t memward_frames_ = 0;
};

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_FRAME_COLLECTOR_H_
