// A host that throws C++ exceptions and calls backtrace() prints the same
// with and without memward preloaded, with every allocation sampled by the
// cached unwinder or by libunwind while exceptions fly.
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include "gtest/gtest.h"

namespace {

// Runs `command` with /bin/sh and returns its standard output.
std::string RunCommand(const std::string& command, int* status) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[512];
  size_t length = 0;
  while ((length = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, length);
  *status = pclose(pipe);
  return output;
}

TEST(Unwinding, HostBehavesTheSame) {
  int status = -1;
  std::string plain = RunCommand(MEMWARD_UNWIND_HOST_PATH, &status);
  ASSERT_EQ(status, 0) << plain;
  EXPECT_NE(plain.find("caught 2000 of 2000"), std::string::npos) << plain;
  EXPECT_NE(plain.find("_Unwind_RaiseException from libgcc_s.so.1"), std::string::npos) << plain;
  EXPECT_NE(plain.find("backtrace from libc.so.6"), std::string::npos) << plain;
  // The cached unwinder, and libunwind loaded at start-up.
  for (const char* unwinder : {"cached", "libunwind"}) {
    SCOPED_TRACE(unwinder);
    std::string preloaded = RunCommand(std::string("LD_PRELOAD=") + MEMWARD_PRELOAD_PATH +
                                           " MEMWARD_CONF=sample_interval=1,sample_unwinder=" +
                                           unwinder + " " + MEMWARD_UNWIND_HOST_PATH,
                                       &status);
    ASSERT_EQ(status, 0) << preloaded;
    EXPECT_EQ(preloaded, plain);
  }
}

// With sample_unwinder=libunwind the run above really loaded libunwind and
// sampled: without that, the comparison would prove nothing.
TEST(Unwinding, LibunwindModeLoadsLibunwind) {
  int status = -1;
  std::string maps = RunCommand(std::string("LD_PRELOAD=") + MEMWARD_PRELOAD_PATH +
                                    " MEMWARD_CONF=sample_interval=1,sample_unwinder=libunwind "
                                    "cat /proc/self/maps",
                                &status);
  ASSERT_EQ(status, 0);
  EXPECT_NE(maps.find("libunwind.so.8"), std::string::npos);
}

// The cached unwinder loads libunwind only for a stack it cannot walk, and
// cat's stacks need no fallback: libunwind and liblzma stay unmapped.
TEST(Unwinding, CachedModeDefersLibunwind) {
  int status = -1;
  std::string maps = RunCommand(std::string("LD_PRELOAD=") + MEMWARD_PRELOAD_PATH +
                                    " MEMWARD_CONF=sample_interval=1 cat /proc/self/maps",
                                &status);
  ASSERT_EQ(status, 0);
  EXPECT_NE(maps.find("libmemward_preload.so"), std::string::npos) << maps;
  EXPECT_EQ(maps.find("libunwind.so.8"), std::string::npos) << maps;
}

}  // namespace
