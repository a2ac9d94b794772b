// JsonWriter and the admin endpoint table, on their sources alone so that
// they also run under AddressSanitizer and UndefinedBehaviorSanitizer.
#include "base/json_writer.h"

#include <gtest/gtest.h>

#include <math.h>

#include <string>

#include "accounting/admin_endpoints.h"

namespace memward {
namespace {

using base::JsonWriter;

TEST(JsonWriter, NestedValuesGetCommas) {
  std::string out;
  JsonWriter json(&out);
  json.BeginObject();
  json.Key("a").Int(-1);
  json.Key("b").BeginArray().Uint(2).Bool(true).Null().BeginObject().EndObject().EndArray();
  json.Key("c").BeginObject().Key("d").String("x").EndObject();
  json.EndObject();
  EXPECT_EQ(out, R"({"a":-1,"b":[2,true,null,{}],"c":{"d":"x"}})");
}

TEST(JsonWriter, EscapesControlAndQuotes) {
  std::string out;
  base::AppendJsonString(std::string("q\"b\\n\n\x01", 7), &out);
  EXPECT_EQ(out, "\"q\\\"b\\\\n\\u000a\\u0001\"");
}

TEST(JsonWriter, InvalidUtf8BecomesReplacement) {
  struct Case {
    std::string input;
    std::string expected;
  } cases[] = {
      {"\xC3\xA9", "\"\xC3\xA9\""},                   // valid two-byte
      {"\xE2\x82\xAC", "\"\xE2\x82\xAC\""},           // valid three-byte
      {"\xF0\x9F\x98\x80", "\"\xF0\x9F\x98\x80\""},   // valid four-byte
      {"\xC0\xAF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\""},   // overlong
      {"\xED\xA0\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},  // surrogate
      {"\xFF", "\"\xEF\xBF\xBD\""},
      {"\xE2\x82", "\"\xEF\xBF\xBD\xEF\xBF\xBD\""},   // truncated
  };
  for (const Case& c : cases) {
    std::string out;
    base::AppendJsonString(c.input, &out);
    EXPECT_EQ(out, c.expected);
  }
}

TEST(JsonWriter, NonFiniteDoubleIsNull) {
  std::string out;
  JsonWriter json(&out);
  json.BeginArray().Double(NAN).Double(INFINITY).Double(0.5).EndArray();
  EXPECT_EQ(out, "[null,null,0.5]");
}

void ServeStats(const accounting::AdminRequest&, accounting::AdminResponse* response) {
  response->body = "stats";
}
void ServeTenant(const accounting::AdminRequest& request, accounting::AdminResponse* response) {
  response->body = request.path_suffix;
}

TEST(AdminEndpoints, ExactAndPrefixMatch) {
  ASSERT_TRUE(accounting::RegisterAdminEndpoint("GET", "/stats", "totals", ServeStats));
  ASSERT_TRUE(accounting::RegisterAdminEndpoint("GET", "/tenants/*", "one tenant", ServeTenant));
  EXPECT_FALSE(accounting::RegisterAdminEndpoint("GET", "/stats", "again", ServeStats));

  accounting::AdminEndpointMatch stats = accounting::FindAdminEndpoint("GET", "/stats");
  EXPECT_EQ(stats.handler, &ServeStats);
  accounting::AdminEndpointMatch tenant = accounting::FindAdminEndpoint("GET", "/tenants/acme");
  EXPECT_EQ(tenant.handler, &ServeTenant);
  EXPECT_EQ(tenant.path_suffix, "acme");

  accounting::AdminEndpointMatch post = accounting::FindAdminEndpoint("POST", "/stats");
  EXPECT_EQ(post.handler, nullptr);
  EXPECT_TRUE(post.path_known);
  accounting::AdminEndpointMatch missing = accounting::FindAdminEndpoint("GET", "/tenants/");
  EXPECT_EQ(missing.handler, nullptr);
  EXPECT_FALSE(missing.path_known);
  EXPECT_EQ(accounting::ListAdminEndpoints().size(), 2u);
}

TEST(AdminEndpoints, ErrorBodyIsJson) {
  accounting::AdminResponse response;
  response.SetError(404, "no tenant \"x\"");
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.body, "{\"error\":\"no tenant \\\"x\\\"\"}\n");
}

TEST(AdminRequest, QueryValueFindsFirst) {
  accounting::AdminRequest request;
  request.query = {{"format", "pprof"}, {"format", "json"}};
  ASSERT_NE(request.QueryValue("format"), nullptr);
  EXPECT_EQ(*request.QueryValue("format"), "pprof");
  EXPECT_EQ(request.QueryValue("bytes"), nullptr);
}

}  // namespace
}  // namespace memward
