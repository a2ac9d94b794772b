// A host that throws C++ exceptions and calls backtrace() prints the same
// with and without memward preloaded, with every allocation sampled (so
// libunwind is loaded and captures stacks while exceptions fly).
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
  std::string preloaded = RunCommand(std::string("LD_PRELOAD=") + MEMWARD_PRELOAD_PATH +
                                         " MEMWARD_CONF=sample_interval=1 " +
                                         MEMWARD_UNWIND_HOST_PATH,
                                     &status);
  ASSERT_EQ(status, 0) << preloaded;
  EXPECT_EQ(preloaded, plain);
  EXPECT_NE(plain.find("caught 2000 of 2000"), std::string::npos) << plain;
  EXPECT_NE(plain.find("_Unwind_RaiseException from libgcc_s.so.1"), std::string::npos) << plain;
  EXPECT_NE(plain.find("backtrace from libc.so.6"), std::string::npos) << plain;
}

// The preloaded run really loaded libunwind and sampled: without that, the
// comparison above would prove nothing.
TEST(Unwinding, PreloadedHostLoadsLibunwind) {
  int status = -1;
  std::string maps = RunCommand(std::string("LD_PRELOAD=") + MEMWARD_PRELOAD_PATH +
                                    " MEMWARD_CONF=sample_interval=1 cat /proc/self/maps",
                                &status);
  ASSERT_EQ(status, 0);
  EXPECT_NE(maps.find("libunwind.so.8"), std::string::npos);
}

}  // namespace
