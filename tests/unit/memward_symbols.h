// Looks up functions that memward exports but glibc's headers do not declare,
// so the same test source works linked and preloaded.
#ifndef MEMWARD_TESTS_UNIT_MEMWARD_SYMBOLS_H_
#define MEMWARD_TESTS_UNIT_MEMWARD_SYMBOLS_H_

#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

#include <cstdio>

namespace memward::testing {

// Returns the default-namespace definition of `name`, aborting when missing.
template <typename Function>
Function* Symbol(const char* name) {
  void* address = dlsym(RTLD_DEFAULT, name);
  if (address == nullptr) {
    std::fprintf(stderr, "symbol %s not found: is memward loaded?\n", name);
    abort();
  }
  return reinterpret_cast<Function*>(address);
}

struct MemwardSymbols {
  void (*free_sized)(void*, size_t) = Symbol<void(void*, size_t)>("free_sized");
  void (*free_aligned_sized)(void*, size_t, size_t) =
      Symbol<void(void*, size_t, size_t)>("free_aligned_sized");
  void (*cfree)(void*) = Symbol<void(void*)>("cfree");
  void* (*libc_malloc)(size_t) = Symbol<void*(size_t)>("__libc_malloc");
  void (*libc_free)(void*) = Symbol<void(void*)>("__libc_free");
  void* (*libc_calloc)(size_t, size_t) = Symbol<void*(size_t, size_t)>("__libc_calloc");
  void* (*libc_realloc)(void*, size_t) = Symbol<void*(void*, size_t)>("__libc_realloc");
  void* (*libc_memalign)(size_t, size_t) = Symbol<void*(size_t, size_t)>("__libc_memalign");
  void* (*mallocx)(size_t, int) = Symbol<void*(size_t, int)>("mallocx");
  void* (*rallocx)(void*, size_t, int) = Symbol<void*(void*, size_t, int)>("rallocx");
  size_t (*xallocx)(void*, size_t, size_t, int) =
      Symbol<size_t(void*, size_t, size_t, int)>("xallocx");
  size_t (*sallocx)(const void*, int) = Symbol<size_t(const void*, int)>("sallocx");
  void (*dallocx)(void*, int) = Symbol<void(void*, int)>("dallocx");
  void (*sdallocx)(void*, size_t, int) = Symbol<void(void*, size_t, int)>("sdallocx");
  size_t (*nallocx)(size_t, int) = Symbol<size_t(size_t, int)>("nallocx");
  int (*mallctl)(const char*, void*, size_t*, void*, size_t) =
      Symbol<int(const char*, void*, size_t*, void*, size_t)>("mallctl");
  int (*mallctlnametomib)(const char*, size_t*, size_t*) =
      Symbol<int(const char*, size_t*, size_t*)>("mallctlnametomib");
  int (*mallctlbymib)(const size_t*, size_t, void*, size_t*, void*, size_t) =
      Symbol<int(const size_t*, size_t, void*, size_t*, void*, size_t)>("mallctlbymib");
  void (*malloc_stats_print)(void (*)(void*, const char*), void*, const char*) =
      Symbol<void(void (*)(void*, const char*), void*, const char*)>("malloc_stats_print");
};

// The symbols, looked up once.
inline const MemwardSymbols& Memward() {
  static const MemwardSymbols symbols;
  return symbols;
}

}  // namespace memward::testing

#endif  // MEMWARD_TESTS_UNIT_MEMWARD_SYMBOLS_H_
