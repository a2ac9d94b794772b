// memward's madvise wrapper for the embedded jemalloc (alloc/engine_shims.cc):
// while a thread zeroes its new cache with memset, a purge that falls back
// from the rejected MADV_DONTNEED to MADV_FREE still releases its pages.
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "alloc/thread_start.h"

extern "C" int mwje_madvise(void* address, size_t length, int advice);

namespace memward::testing {
namespace {

// Whether this process's page tables map the page at `address`, from the
// present bit of /proc/self/pagemap.
bool PageIsMapped(const void* address) {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << "cannot open /proc/self/pagemap";
  if (fd < 0) return false;
  uint64_t entry = 0;
  const uintptr_t page = reinterpret_cast<uintptr_t>(address) / sysconf(_SC_PAGESIZE);
  ssize_t read_bytes = pread(fd, &entry, sizeof(entry), static_cast<off_t>(page * sizeof(entry)));
  close(fd);
  EXPECT_EQ(read_bytes, static_cast<ssize_t>(sizeof(entry)));
  return (entry >> 63) != 0;
}

// Four written pages of their own mapping.
class EngineMadviseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* memory = mmap(nullptr, 4 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    ASSERT_NE(memory, MAP_FAILED);
    pages_ = static_cast<unsigned char*>(memory);
    memset(pages_, 0xa5, 4 * page_);
  }

  void TearDown() override {
    alloc::SetZeroingWithMemset(false);
    if (pages_ != nullptr) munmap(pages_, 4 * page_);
  }

  size_t page_ = 0;
  unsigned char* pages_ = nullptr;
};

TEST_F(EngineMadviseTest, PurgeFallbackWhileZeroingReleasesPages) {
  alloc::SetZeroingWithMemset(true);
  errno = 1234;
  EXPECT_EQ(mwje_madvise(pages_, 2 * page_, MADV_DONTNEED), -1) << "zeroing must use memset";
  EXPECT_TRUE(PageIsMapped(pages_));
  EXPECT_EQ(mwje_madvise(pages_, 2 * page_, MADV_FREE), 0);
  EXPECT_EQ(errno, 1234);
  alloc::SetZeroingWithMemset(false);

  EXPECT_FALSE(PageIsMapped(pages_));
  EXPECT_FALSE(PageIsMapped(pages_ + page_));
  EXPECT_EQ(pages_[0], 0) << "MADV_DONTNEED gives zeroed pages";
  EXPECT_TRUE(PageIsMapped(pages_ + 2 * page_)) << "a page outside the range was released";
}

// MADV_FREE of another range than the rejected one stays lazy. Its page
// stays mapped unless the system reclaims memory in between.
TEST_F(EngineMadviseTest, OtherRangeKeepsLazyFree) {
  alloc::SetZeroingWithMemset(true);
  EXPECT_EQ(mwje_madvise(pages_, 2 * page_, MADV_DONTNEED), -1);
  EXPECT_EQ(mwje_madvise(pages_ + 2 * page_, page_, MADV_FREE), 0);
  alloc::SetZeroingWithMemset(false);

  EXPECT_TRUE(PageIsMapped(pages_ + 2 * page_));
  EXPECT_TRUE(PageIsMapped(pages_));
}

TEST_F(EngineMadviseTest, DontneedOutsideZeroingReleasesPages) {
  EXPECT_EQ(mwje_madvise(pages_, page_, MADV_DONTNEED), 0);
  EXPECT_FALSE(PageIsMapped(pages_));
  EXPECT_TRUE(PageIsMapped(pages_ + page_));
}

}  // namespace
}  // namespace memward::testing
