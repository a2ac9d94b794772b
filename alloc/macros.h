// Compiler annotations shared by memward's sources.
#ifndef MEMWARD_ALLOC_MACROS_H_
#define MEMWARD_ALLOC_MACROS_H_

// Exported functions, and the sampler's own functions, go to the
// `memward_text` section: the sampler leaves the frames in that section out
// of a sampled stack, so a stack starts at the program's own call.
#define MEMWARD_TEXT __attribute__((section("memward_text")))
#define MEMWARD_EXPORT __attribute__((visibility("default"))) MEMWARD_TEXT
#define MEMWARD_LIKELY(x) __builtin_expect(!!(x), 1)
#define MEMWARD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MEMWARD_ALWAYS_INLINE inline __attribute__((always_inline))
#define MEMWARD_NOINLINE __attribute__((noinline))

#endif  // MEMWARD_ALLOC_MACROS_H_
