// The C API's first allocator check when it runs inside memward's own scope.
//
// This program is built without PIE and takes malloc's address, so the PLT
// entry of the program is malloc's canonical address and libmemward.so's
// &malloc differs from its own malloc. The C API then probes: it calls
// malloc with the thread marked and expects memward's slow path to clear the
// mark. memward_metrics_text runs its work in memward's own tenant scope and
// makes the first check of this process from there.
#include <stdlib.h>

#include "gtest/gtest.h"
#include "memward/memward.h"

namespace {

void* (*volatile g_malloc_address)(size_t) = nullptr;

TEST(AllocatorCheck, FirstCheckInsideMemwardScope) {
  // An absolute reference in code built without PIE gives malloc its
  // canonical address in this program's PLT.
  g_malloc_address = &malloc;
  size_t length = 0;
  // No buffer: only the length is wanted, and FULL is the expected status.
  EXPECT_EQ(memward_metrics_text(nullptr, 0, &length), MEMWARD_ERROR_FULL);
  EXPECT_GT(length, 0u) << "the metrics text is empty: the C API calls inside it failed";

  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(MEMWARD_PROCESS_TENANT, &saved), MEMWARD_OK)
      << "the probe made inside memward's scope decided that memward is not the allocator";
  EXPECT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
}

}  // namespace
