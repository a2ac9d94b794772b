// The embedded jemalloc: the engine's public functions under their renamed
// mwje_* symbols, and the mallocx flag encodings of jemalloc 5.3.
//
// Why embedded: Debian's libjemalloc_pic.a is linked into memward with its
// public names renamed (alloc/jemalloc_symbols.txt), so memward exports malloc
// and jemalloc's own API itself while calling the engine directly. The
// alternative, linking libjemalloc.so.2 and finding its functions with dlsym,
// would need dlsym (which allocates) during the first malloc and an indirect
// call on every allocation. A host that links libjemalloc.so.2 itself (Debian's
// redis-server) still has one heap: memward is earlier in the symbol search
// order, so the host's calls to mallocx or mallctl reach memward, and the
// host's copy of jemalloc is mapped but never asked for memory.
//
// Only this header names mwje_* functions; the rest of memward goes through
// alloc/allocator.h.
#ifndef MEMWARD_ALLOC_ENGINE_H_
#define MEMWARD_ALLOC_ENGINE_H_

#include <stddef.h>

extern "C" {
void* mwje_malloc(size_t size) noexcept;
void* mwje_calloc(size_t count, size_t size) noexcept;
int mwje_posix_memalign(void** result, size_t alignment, size_t size) noexcept;
void* mwje_aligned_alloc(size_t alignment, size_t size) noexcept;
void* mwje_realloc(void* pointer, size_t size) noexcept;
void mwje_free(void* pointer) noexcept;
void* mwje_mallocx(size_t size, int flags) noexcept;
void* mwje_rallocx(void* pointer, size_t size, int flags) noexcept;
size_t mwje_xallocx(void* pointer, size_t size, size_t extra, int flags) noexcept;
size_t mwje_sallocx(const void* pointer, int flags) noexcept;
void mwje_dallocx(void* pointer, int flags) noexcept;
void mwje_sdallocx(void* pointer, size_t size, int flags) noexcept;
// jemalloc 5.3's sized free without flags, which its own sized operator
// delete calls (src/jemalloc.c, je_sdallocx_noflags; the archive names it
// je_je_sdallocx_noflags). Unlike sdallocx, it has a fast path: up to
// kEngineSizeLookupMax bytes it finds the size class from `size` and skips
// the extent lookup of free. `pointer` must not be null.
void mwje_sdallocx_noflags(void* pointer, size_t size) noexcept;
size_t mwje_nallocx(size_t size, int flags) noexcept;
int mwje_mallctl(const char* name, void* old_value, size_t* old_length, void* new_value,
                 size_t new_length) noexcept;
int mwje_mallctlnametomib(const char* name, size_t* mib, size_t* mib_length) noexcept;
int mwje_mallctlbymib(const size_t* mib, size_t mib_length, void* old_value,
                      size_t* old_length, void* new_value, size_t new_length) noexcept;
void mwje_malloc_stats_print(void (*write)(void*, const char*), void* context,
                             const char* options) noexcept;
size_t mwje_malloc_usable_size(const void* pointer) noexcept;

// jemalloc 5.3's operator new and new[] (src/jemalloc_cpp.cpp), renamed. Their
// thread-cache fast path is inline. On failure they run the new-handler
// loop themselves, retrying with mwje_malloc, and the throwing forms throw
// std::bad_alloc.
void* mwje_operator_new(size_t size);
void* mwje_operator_new_array(size_t size);
void* mwje_operator_new_nothrow(size_t size, const void* nothrow_tag) noexcept;
void* mwje_operator_new_array_nothrow(size_t size, const void* nothrow_tag) noexcept;

// jemalloc reads this once, when it initialises itself; bootstrap sets it first.
extern const char* mwje_malloc_conf;
}

namespace memward::alloc {

// mallocx flags, with the encodings of jemalloc 5.3's jemalloc.h.
inline constexpr int MallocxLgAlign(unsigned lg_alignment) { return static_cast<int>(lg_alignment); }
inline int MallocxAlign(size_t alignment) { return static_cast<int>(__builtin_ctzl(alignment)); }
inline constexpr int kMallocxZero = 0x40;
inline constexpr int MallocxTcache(unsigned tcache) { return static_cast<int>((tcache + 2) << 8); }
inline constexpr int kMallocxTcacheNone = (-1 + 2) << 8;
inline constexpr int MallocxArena(unsigned arena) { return static_cast<int>((arena + 1) << 20); }
// The largest size whose class jemalloc 5.3 finds by table lookup
// (SC_LOOKUP_MAXCLASS); mwje_sdallocx_noflags takes its fast path up to it.
inline constexpr size_t kEngineSizeLookupMax = 4096;
// Debian's jemalloc is built with profiling support (config.prof). Its
// sized free therefore sends every page-aligned pointer, where a profiled
// block could start, to its general path. In a malloc/free_sized loop on a
// 2-CPU Xeon, the first 16-byte block of a slab took 7.3 ns that way
// against 4.0 ns with free. Its page is 4 KiB (LG_PAGE 12).
inline constexpr uintptr_t kEnginePageMask = 4095;
// The arena index that mallctl names take to mean every arena.
inline constexpr unsigned kAllArenas = 4096;

}  // namespace memward::alloc

#endif  // MEMWARD_ALLOC_ENGINE_H_
