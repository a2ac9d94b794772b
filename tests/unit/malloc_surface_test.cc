// The C, POSIX and glibc allocation surface of memward, case by case. The
// same tests run twice: linked against libmemward.so and preloaded with
// libmemward_preload.so into a binary that does not link it.
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/unit/memward_symbols.h"

namespace {

using memward::testing::Memward;

constexpr int kErrnoSentinel = 12345;

bool IsAligned(const void* pointer, size_t alignment) {
  return reinterpret_cast<uintptr_t>(pointer) % alignment == 0;
}

// Keeps the compiler from folding away or merging allocation calls.
void* volatile g_sink;
size_t Opaque(size_t value) {
  volatile size_t copy = value;
  return copy;
}

TEST(Surface, MemwardServesMalloc) {
  ASSERT_NE(dlsym(RTLD_DEFAULT, "memward_version"), nullptr);
  Dl_info info;
  ASSERT_NE(dladdr(dlsym(RTLD_DEFAULT, "malloc"), &info), 0);
  EXPECT_NE(std::string(info.dli_fname).find("libmemward"), std::string::npos) << info.dli_fname;
}

TEST(Surface, MallocZeroReturnsUniquePointers) {
  void* first = malloc(0);
  void* second = malloc(0);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_NE(first, second);
  free(first);
  free(second);
}

TEST(Surface, MallocHugeSetsEnomem) {
  errno = 0;
  EXPECT_EQ(malloc(Opaque(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(malloc(Opaque(SIZE_MAX / 2 + 1)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Surface, CallocOverflowSetsEnomem) {
  errno = 0;
  EXPECT_EQ(calloc(Opaque(SIZE_MAX / 2), 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(calloc(Opaque(1) << 32, Opaque(1) << 32), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Surface, CallocZeroesReusedMemory) {
  for (size_t size : {24, 4000, 100000, 3 << 20}) {
    char* dirty = static_cast<char*>(malloc(size));
    ASSERT_NE(dirty, nullptr);
    memset(dirty, 0xab, size);
    free(dirty);
    char* clean = static_cast<char*>(calloc(1, size));
    ASSERT_NE(clean, nullptr);
    for (size_t i = 0; i < size; i++) ASSERT_EQ(clean[i], 0) << "size " << size << " at " << i;
    free(clean);
  }
}

TEST(Surface, ReallocarrayOverflowKeepsOriginal) {
  char* block = static_cast<char*>(malloc(16));
  ASSERT_NE(block, nullptr);
  strcpy(block, "kept");
  errno = 0;
  EXPECT_EQ(reallocarray(block, Opaque(SIZE_MAX / 4), 8), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_STREQ(block, "kept");
  // A failed reallocarray leaves `block` valid, which GCC cannot know.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuse-after-free"
  char* grown = static_cast<char*>(reallocarray(block, 100, 8));
#pragma GCC diagnostic pop
  ASSERT_NE(grown, nullptr);
  EXPECT_STREQ(grown, "kept");
  EXPECT_GE(malloc_usable_size(grown), 800u);
  free(grown);
}

TEST(Surface, PosixMemalignRejectsBadAlignment) {
  for (size_t alignment : {size_t{0}, size_t{1}, size_t{2}, size_t{4}, size_t{3}, size_t{24},
                           size_t{48}, sizeof(void*) * 3}) {
    void* result = reinterpret_cast<void*>(0x1);
    errno = kErrnoSentinel;
    EXPECT_EQ(posix_memalign(&result, alignment, 64), EINVAL) << "alignment " << alignment;
    EXPECT_EQ(errno, kErrnoSentinel) << "alignment " << alignment;
    EXPECT_EQ(result, reinterpret_cast<void*>(0x1)) << "alignment " << alignment;
  }
}

TEST(Surface, PosixMemalignAlignsAndKeepsErrno) {
  for (size_t alignment = sizeof(void*); alignment <= (size_t{1} << 22); alignment <<= 1) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{100}, alignment + 1}) {
      void* result = nullptr;
      errno = kErrnoSentinel;
      ASSERT_EQ(posix_memalign(&result, alignment, size), 0);
      EXPECT_EQ(errno, kErrnoSentinel);
      ASSERT_NE(result, nullptr);
      EXPECT_TRUE(IsAligned(result, alignment)) << alignment;
      memset(result, 1, size);
      free(result);
    }
  }
}

TEST(Surface, PosixMemalignHugeReturnsEnomem) {
  void* result = nullptr;
  errno = kErrnoSentinel;
  EXPECT_EQ(posix_memalign(&result, 64, Opaque(SIZE_MAX - 100)), ENOMEM);
  EXPECT_EQ(errno, kErrnoSentinel);
}

TEST(Surface, AlignedAllocRejectsBadAlignment) {
  for (size_t alignment : {size_t{0}, size_t{3}, size_t{24}, size_t{1000}}) {
    errno = 0;
    EXPECT_EQ(aligned_alloc(alignment, 64), nullptr) << alignment;
    EXPECT_EQ(errno, EINVAL) << alignment;
  }
}

TEST(Surface, AlignedAllocAcceptsAnySize) {
  for (size_t alignment : {1, 2, 8, 64, 4096, 1 << 16}) {
    void* result = aligned_alloc(alignment, 100);  // Not a multiple: allowed since C17.
    ASSERT_NE(result, nullptr) << alignment;
    EXPECT_TRUE(IsAligned(result, alignment));
    free(result);
  }
  errno = 0;
  EXPECT_EQ(aligned_alloc(64, Opaque(SIZE_MAX - 10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Surface, MemalignRoundsAlignmentUp) {
  void* result = memalign(Opaque(48), 10);  // glibc rounds 48 up to 64.
  ASSERT_NE(result, nullptr);
  EXPECT_TRUE(IsAligned(result, 64));
  free(result);
  errno = 0;
  EXPECT_EQ(memalign(Opaque(SIZE_MAX), 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

TEST(Surface, ReallocZeroFreesAndReturnsNull) {
  void* block = malloc(100);
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(realloc(block, 0), nullptr);
  void* fresh = realloc(nullptr, 0);
  ASSERT_NE(fresh, nullptr);
  free(fresh);
}

TEST(Surface, ReallocKeepsContents) {
  char* block = static_cast<char*>(malloc(10));
  ASSERT_NE(block, nullptr);
  memcpy(block, "abcdefghi", 10);
  for (size_t size : {100, 5000, 1 << 20, 16 << 20, 50}) {
    block = static_cast<char*>(realloc(block, size));
    ASSERT_NE(block, nullptr);
    EXPECT_EQ(memcmp(block, "abcdefghi", 10), 0) << size;
  }
  errno = 0;
  EXPECT_EQ(realloc(block, Opaque(SIZE_MAX - 1)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(memcmp(block, "abcdefghi", 10), 0);
  free(block);
}

TEST(Surface, PvallocRoundsToPages) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t size : {size_t{0}, size_t{1}, page - 1, page, page + 1, 10 * page + 3}) {
    void* block = pvalloc(size);
    ASSERT_NE(block, nullptr) << size;
    EXPECT_TRUE(IsAligned(block, page));
    size_t rounded = size == 0 ? page : (size + page - 1) / page * page;
    EXPECT_GE(malloc_usable_size(block), rounded) << size;
    memset(block, 7, rounded);
    free(block);
  }
  errno = 0;
  EXPECT_EQ(pvalloc(Opaque(SIZE_MAX - 1)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Surface, VallocAlignsToPage) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* block = valloc(100);
  ASSERT_NE(block, nullptr);
  EXPECT_TRUE(IsAligned(block, page));
  free(block);
}

TEST(Surface, FreeNeverChangesErrno) {
  std::vector<void*> blocks;
  for (size_t size = 8; size <= (size_t{64} << 20); size *= 3) {
    void* block = malloc(size);
    ASSERT_NE(block, nullptr);
    memset(block, 1, size);
    blocks.push_back(block);
  }
  for (void* block : blocks) {
    errno = kErrnoSentinel;
    free(block);
    EXPECT_EQ(errno, kErrnoSentinel);
  }
  errno = kErrnoSentinel;
  free(nullptr);
  EXPECT_EQ(errno, kErrnoSentinel);
  malloc_trim(0);
  errno = kErrnoSentinel;
  free(malloc(Opaque(1) << 26));
  EXPECT_EQ(errno, kErrnoSentinel);
}

TEST(Surface, UsableSizeOfNullIsZero) {
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
  for (size_t size : {1, 17, 1000, 70000, 5 << 20}) {
    void* block = malloc(size);
    ASSERT_NE(block, nullptr);
    EXPECT_GE(malloc_usable_size(block), size);
    free(block);
  }
}

TEST(Surface, SizedFreesAndCfree) {
  void* block = malloc(200);
  ASSERT_NE(block, nullptr);
  errno = kErrnoSentinel;
  Memward().free_sized(block, 200);
  Memward().free_sized(nullptr, 10);
  void* aligned = aligned_alloc(256, 1000);
  ASSERT_NE(aligned, nullptr);
  Memward().free_aligned_sized(aligned, 256, 1000);
  Memward().free_aligned_sized(nullptr, 64, 10);
  Memward().cfree(malloc(10));
  EXPECT_EQ(errno, kErrnoSentinel);
}

TEST(Surface, LibcEntryPointsShareTheHeap) {
  void* block = Memward().libc_malloc(100);
  ASSERT_NE(block, nullptr);
  block = Memward().libc_realloc(block, 1000);
  ASSERT_NE(block, nullptr);
  free(block);
  void* zeroed = Memward().libc_calloc(10, 10);
  ASSERT_NE(zeroed, nullptr);
  EXPECT_EQ(static_cast<char*>(zeroed)[99], 0);
  Memward().libc_free(zeroed);
  void* aligned = Memward().libc_memalign(128, 10);
  ASSERT_NE(aligned, nullptr);
  EXPECT_TRUE(IsAligned(aligned, 128));
  free(aligned);
}

TEST(Surface, MallocTrimReportsRelease) {
  void* block = malloc(Opaque(32) << 20);
  ASSERT_NE(block, nullptr);
  memset(block, 1, size_t{32} << 20);
  free(block);
  EXPECT_EQ(malloc_trim(0), 1);
  EXPECT_EQ(malloc_trim(0), 0);
}

TEST(Surface, Mallinfo2CountsAllocatedBytes) {
  struct mallinfo2 before = mallinfo2();
  void* block = malloc(Opaque(10) << 20);
  ASSERT_NE(block, nullptr);
  struct mallinfo2 during = mallinfo2();
  EXPECT_GE(during.uordblks, before.uordblks + (size_t{10} << 20));
  EXPECT_GE(during.arena, during.uordblks);
  free(block);
  struct mallinfo2 after = mallinfo2();
  EXPECT_LT(after.uordblks, during.uordblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo narrow = mallinfo();
#pragma GCC diagnostic pop
  EXPECT_GT(narrow.uordblks, 0);
}

// dlopen and dlsym allocate (glibc's link maps, dlerror buffers) while
// holding the loader's lock; memward must serve them without recursing into
// its own start-up or deadlocking, from several threads at once.
TEST(Surface, DlopenAndDlsymAllocate) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([] {
      for (int i = 0; i < 200; i++) {
        void* library = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
        ASSERT_NE(library, nullptr) << dlerror();
        EXPECT_NE(dlsym(library, "cos"), nullptr);
        EXPECT_EQ(dlsym(library, "no_such_symbol_here"), nullptr);
        EXPECT_NE(dlerror(), nullptr);
        void* block = malloc(100 + i);
        ASSERT_NE(block, nullptr);
        free(block);
        dlclose(library);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
}

TEST(Surface, EngineOptionsApplied) {
  size_t oversize = 1;
  size_t length = sizeof(oversize);
  ASSERT_EQ(Memward().mallctl("opt.oversize_threshold", &oversize, &length, nullptr, 0), 0);
  EXPECT_EQ(oversize, 0u);
  ssize_t decay = 0;
  length = sizeof(decay);
  ASSERT_EQ(Memward().mallctl("opt.dirty_decay_ms", &decay, &length, nullptr, 0), 0);
  EXPECT_EQ(decay, 1000);
  size_t lg_fit = 0;
  length = sizeof(lg_fit);
  ASSERT_EQ(Memward().mallctl("opt.lg_extent_max_active_fit", &lg_fit, &length, nullptr, 0), 0);
  EXPECT_EQ(lg_fit, 10u);
  bool background = true;
  length = sizeof(background);
  ASSERT_EQ(Memward().mallctl("background_thread", &background, &length, nullptr, 0), 0);
  EXPECT_FALSE(background);
}

}  // namespace
