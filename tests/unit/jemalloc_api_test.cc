// jemalloc's own API as memward exports it, for hosts built against jemalloc.
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/unit/memward_symbols.h"

namespace {

using memward::testing::Memward;

constexpr int kZero = 0x40;  // MALLOCX_ZERO
int Align(size_t alignment) { return __builtin_ctzl(alignment); }  // MALLOCX_ALIGN

TEST(JemallocApi, SymbolsComeFromMemward) {
  for (const char* name : {"mallocx", "sdallocx", "mallctl", "malloc_stats_print"}) {
    Dl_info info;
    ASSERT_NE(dladdr(dlsym(RTLD_DEFAULT, name), &info), 0) << name;
    EXPECT_NE(std::string(info.dli_fname).find("libmemward"), std::string::npos) << name;
  }
}

TEST(JemallocApi, MallocxFamily) {
  void* block = Memward().mallocx(100, kZero | Align(256));
  ASSERT_NE(block, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % 256, 0u);
  EXPECT_EQ(static_cast<char*>(block)[99], 0);
  EXPECT_EQ(Memward().sallocx(block, 0), Memward().nallocx(100, Align(256)));
  block = Memward().rallocx(block, 5000, 0);
  ASSERT_NE(block, nullptr);
  EXPECT_GE(Memward().sallocx(block, 0), 5000u);
  EXPECT_GE(Memward().xallocx(block, 5000, 0, 0), 5000u);
  Memward().sdallocx(block, 5000, 0);
  void* other = Memward().mallocx(64, 0);
  ASSERT_NE(other, nullptr);
  Memward().dallocx(other, 0);
  EXPECT_EQ(Memward().nallocx(1, 0), 8u);
}

TEST(JemallocApi, MallctlReadsVersionAndStats) {
  const char* version = nullptr;
  size_t length = sizeof(version);
  ASSERT_EQ(Memward().mallctl("version", &version, &length, nullptr, 0), 0);
  EXPECT_EQ(std::string(version).rfind("5.3.0", 0), 0u) << version;

  size_t mib[4];
  size_t mib_length = 4;
  ASSERT_EQ(Memward().mallctlnametomib("stats.allocated", mib, &mib_length), 0);
  uint64_t epoch = 1;
  length = sizeof(epoch);
  ASSERT_EQ(Memward().mallctl("epoch", &epoch, &length, &epoch, length), 0);
  size_t allocated = 0;
  length = sizeof(allocated);
  ASSERT_EQ(Memward().mallctlbymib(mib, mib_length, &allocated, &length, nullptr, 0), 0);
  EXPECT_GT(allocated, 0u);
  EXPECT_NE(Memward().mallctl("no.such.name", nullptr, nullptr, nullptr, 0), 0);
}

TEST(JemallocApi, StatsPrintWritesReport) {
  std::string report;
  Memward().malloc_stats_print(
      [](void* context, const char* text) { static_cast<std::string*>(context)->append(text); },
      &report, "g");
  EXPECT_NE(report.find("jemalloc statistics"), std::string::npos);
}

}  // namespace
