// main() of every process test binary: GoogleTest plus the watchdog.
#include <gtest/gtest.h>

#include "process_test_support.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  memward_test::InstallWatchdog();
  return RUN_ALL_TESTS();
}
