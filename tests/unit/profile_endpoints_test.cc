// GET /heap and GET /leaks through the admin endpoint table, with real
// sampling. Like the sampler tests, the program links memward's objects
// itself, so it can call the endpoint table and the sampler directly.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "accounting/admin_endpoints.h"
#include "accounting/profile_reader.h"
#include "accounting/profile_service.h"
#include "accounting/sampler.h"

namespace memward_endpoint_test {

std::vector<void*> g_blocks;

[[gnu::noinline]] void HoldBuffers() {
  for (int i = 0; i < 64; i++) {
    void* block = malloc(4096);
    memset(block, 5, 64);
    g_blocks.push_back(block);
  }
  asm volatile("" ::: "memory");
}

}  // namespace memward_endpoint_test

namespace memward::accounting {
namespace {

class ProfileEndpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The vector's own block is allocated before sampling, so HoldBuffers'
    // samples are its 64 buffers alone.
    memward_endpoint_test::g_blocks.reserve(64);
    // Every allocation of 37 bytes or more is sampled at a 1-byte interval.
    ASSERT_TRUE(SetSampleInterval(1));
    ASSERT_TRUE(StartProfileService());
    memward_endpoint_test::HoldBuffers();
  }
  void TearDown() override {
    for (void* block : memward_endpoint_test::g_blocks) free(block);
    memward_endpoint_test::g_blocks.clear();
    SetSampleInterval(512 * 1024);
  }

  AdminResponse Get(const std::string& path, const std::string& format) {
    AdminEndpointMatch match = FindAdminEndpoint("GET", path);
    AdminResponse response;
    EXPECT_NE(match.handler, nullptr) << path;
    if (match.handler == nullptr) return response;
    AdminRequest request;
    request.method = "GET";
    request.path = path;
    if (!format.empty()) request.query.emplace_back("format", format);
    match.handler(request, &response);
    return response;
  }
};

TEST_F(ProfileEndpointsTest, HeapJsonNamesHoldingFunction) {
  AdminResponse response = Get("/heap", "json");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_NE(response.body.find("memward_endpoint_test::HoldBuffers()"), std::string::npos)
      << response.body.substr(0, 2000);
  // memward's own frames (malloc and the sampler) are trimmed.
  EXPECT_EQ(response.body.find("memward::alloc::"), std::string::npos)
      << response.body.substr(0, 2000);
}

TEST_F(ProfileEndpointsTest, HeapPprofDecodes) {
  AdminResponse response = Get("/heap", "");  // pprof is the default
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "application/octet-stream");
  ASSERT_GE(response.body.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(response.body[0]), 0x1f);
  DecodedProfile profile;
  std::string error;
  ASSERT_TRUE(DecodeProfile(response.body, &profile, &error)) << error;
  int inuse = profile.SampleIndex("inuse_space");
  ASSERT_GE(inuse, 0);
  int64_t held = 0;
  for (const DecodedSample& sample : profile.samples) {
    std::vector<std::string> names = profile.StackNames(sample);
    if (!names.empty() && names[0] == "memward_endpoint_test::HoldBuffers()") {
      held += sample.values[static_cast<size_t>(inuse)];
    }
  }
  // At a 1-byte interval every block is sampled and weighs its own size.
  EXPECT_EQ(held, 64 * 4096);
}

TEST_F(ProfileEndpointsTest, HeapFoldedIsText) {
  AdminResponse response = Get("/heap", "folded");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "text/plain; charset=utf-8");
  EXPECT_NE(response.body.find("memward_endpoint_test::HoldBuffers() 262144\n"),
            std::string::npos)
      << response.body.substr(0, 2000);
}

TEST_F(ProfileEndpointsTest, HeapRejectsUnknownFormat) {
  AdminResponse response = Get("/heap", "svg");
  EXPECT_EQ(response.status, 400);
  EXPECT_NE(response.body.find("invalid format 'svg': expected pprof, folded or json"),
            std::string::npos)
      << response.body;
}

TEST_F(ProfileEndpointsTest, LeaksReportsWindows) {
  CloseLeakWindowNow();
  CloseLeakWindowNow();
  AdminResponse response = Get("/leaks", "");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_NE(response.body.find("\"windows_closed\":"), std::string::npos) << response.body;
  EXPECT_NE(response.body.find("\"suspects\":[]"), std::string::npos) << response.body;
  EXPECT_TRUE(FindAdminEndpoint("POST", "/leaks").path_known);
  EXPECT_EQ(FindAdminEndpoint("POST", "/leaks").handler, nullptr);
}

}  // namespace
}  // namespace memward::accounting
