// Scope exits with memward_scope structs that the caller changed after entry.
// The token in `reserved` is copied from a real entry, so only the other
// fields show the forgery.
#include <stdlib.h>

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "memward/memward.h"
#include "tests/unit/tenant_test_util.h"

namespace memward::testing {
namespace {

// Holds a request of `tenant` open on a thread of its own until Finish.
class OpenRequest {
 public:
  explicit OpenRequest(memward_tenant_id tenant)
      : worker_([this, tenant] {
          begin_status_ = memward_request_begin(tenant, &request_);
          phase_ = 1;
          while (phase_.load() != 2) std::this_thread::yield();
          end_status_ = memward_request_end(&request_, nullptr);
        }) {
    while (phase_.load() != 1) std::this_thread::yield();
  }

  // Ends the request on its thread and returns memward_request_end's status.
  int Finish() {
    phase_ = 2;
    worker_.join();
    return end_status_;
  }

  int begin_status() const { return begin_status_; }
  const memward_request& request() const { return request_; }

 private:
  memward_request request_{};
  int begin_status_ = -1;
  int end_status_ = -1;
  std::atomic<int> phase_{0};
  std::thread worker_;
};

// An exit that names another tenant's open request puts the thread in that
// request's arena while charging the forged tenant, at scope depth 0, so no
// exit leaves it and the request cannot end (MEMWARD_ERROR_BUSY). A free of
// the block from the process scope credits the arena's tenant, so the forger
// keeps live bytes it freed and the victim goes negative.
TEST(ScopeForgery, ExitIntoOtherTenantsRequest) {
  memward_tenant_id victim = Register(UniqueName("forgery-victim"));
  memward_tenant_id forger = Register(UniqueName("forgery-forger"));
  ASSERT_NE(victim, 0u);
  ASSERT_NE(forger, 0u);
  OpenRequest open(victim);
  ASSERT_EQ(open.begin_status(), MEMWARD_OK);
  ASSERT_NE(open.request().slot, 0u) << "the request pool is exhausted";

  memward_scope saved;
  ASSERT_EQ(memward_scope_enter(forger, &saved), MEMWARD_OK);
  memward_scope forged = saved;
  forged.tenant = forger;
  forged.slot = open.request().slot;
  forged.generation = open.request().generation;
  const int exit_status = memward_scope_exit(&forged);
  void* block = Allocate(4096);

  // Entering the process scope leaves whichever scope the exit made current.
  // After an accepted forgery the thread stays in the process scope, because
  // its exit would return to the forged request.
  memward_scope process;
  ASSERT_EQ(memward_scope_enter(MEMWARD_PROCESS_TENANT, &process), MEMWARD_OK);
  free(block);
  if (exit_status != MEMWARD_OK) {
    EXPECT_EQ(memward_scope_exit(&process), MEMWARD_OK);
    EXPECT_EQ(memward_scope_exit(&saved), MEMWARD_OK);
  }
  memward_thread_flush();
  EXPECT_EQ(open.Finish(), MEMWARD_OK);

  EXPECT_EQ(exit_status, MEMWARD_ERROR_INVALID);
  EXPECT_EQ(Stats(forger).live_bytes, 0);
  EXPECT_EQ(Stats(victim).live_bytes, 0);
}

}  // namespace
}  // namespace memward::testing
