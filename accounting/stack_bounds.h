// The bounds of the mapping that contains the calling thread's stack
// pointer, which the cached unwinder's reads must stay inside.
#ifndef MEMWARD_ACCOUNTING_STACK_BOUNDS_H_
#define MEMWARD_ACCOUNTING_STACK_BOUNDS_H_

#include <stdint.h>

namespace memward::accounting {

struct StackBounds {
  uintptr_t low = 0;   // the mapping's first byte
  uintptr_t high = 0;  // one past its last byte
};

// Sets `bounds` to the mapping that contains `stack_pointer`. The thread's
// last result is kept in thread-local storage and reused while it contains
// the stack pointer. Otherwise /proc/self/maps is read (with a buffer on the
// stack, no heap memory), which costs tens of microseconds: on a thread's
// first capture, when the main thread's stack has grown, or on an
// alternate signal stack. Returns false when the mapping is not found.
bool FindStackBounds(uintptr_t stack_pointer, StackBounds& bounds);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_STACK_BOUNDS_H_
