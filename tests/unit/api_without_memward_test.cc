// A program built with memward's headers but run without the library: every
// call returns MEMWARD_ERROR_NOT_LOADED instead of crashing.
#include "gtest/gtest.h"
#include "memward/memward.h"
#include "memward/memward.hpp"

namespace {

TEST(ApiWithoutMemward, CCallsReturnNotLoaded) {
  EXPECT_EQ(memward_version(), nullptr);
  EXPECT_STREQ(memward_library_kind(), "none");
  memward_tenant_options options;
  options.soft_limit = 5;
  memward_tenant_options_init(&options);
  EXPECT_EQ(options.soft_limit, 0u);
  memward_tenant_id id = 0;
  EXPECT_EQ(memward_tenant_register("a", &options, &id), MEMWARD_ERROR_NOT_LOADED);
  memward_scope saved;
  EXPECT_EQ(memward_scope_enter(2, &saved), MEMWARD_ERROR_NOT_LOADED);
  memward_request request;
  EXPECT_EQ(memward_request_begin(2, &request), MEMWARD_ERROR_NOT_LOADED);
  EXPECT_EQ(memward_thread_flush(), MEMWARD_ERROR_NOT_LOADED);
  EXPECT_STREQ(memward_strerror(MEMWARD_ERROR_NOT_LOADED),
               "memward is not loaded in this process");
}

TEST(ApiWithoutMemward, CppWrappersReturnEmpty) {
  EXPECT_FALSE(memward::IsLoaded());
  memward::Status status;
  EXPECT_FALSE(memward::Tenant::Register("a", {}, &status).has_value());
  EXPECT_EQ(status.code(), MEMWARD_ERROR_NOT_LOADED);
  memward::Tenant tenant(2);
  memward::TenantScope scope(tenant);
  EXPECT_FALSE(scope.status().ok());
  EXPECT_TRUE(memward::AllTenantStats().empty());
}

}  // namespace
