// Compiler annotations shared by memward's sources.
#ifndef MEMWARD_ALLOC_MACROS_H_
#define MEMWARD_ALLOC_MACROS_H_

#define MEMWARD_EXPORT __attribute__((visibility("default")))
#define MEMWARD_LIKELY(x) __builtin_expect(!!(x), 1)
#define MEMWARD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MEMWARD_ALWAYS_INLINE inline __attribute__((always_inline))
#define MEMWARD_NOINLINE __attribute__((noinline))

#endif  // MEMWARD_ALLOC_MACROS_H_
