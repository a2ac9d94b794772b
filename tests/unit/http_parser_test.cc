// The admin server's request parser: valid requests, every limit and
// malformed input, and a bounded run over random and mutated inputs.
#include "accounting/http_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace memward::accounting {
namespace {

HttpParseResult Parse(const std::string& text, AdminRequest* request = nullptr,
                      HttpLimits limits = HttpLimits()) {
  AdminRequest scratch;
  return ParseHttpRequest(text, limits, request != nullptr ? request : &scratch);
}

TEST(HttpParserTest, ParsesGetWithQuery) {
  AdminRequest request;
  HttpParseResult result =
      Parse("GET /heap%2Fx?format=pprof&seconds=3&flag&a+b=c%20d HTTP/1.1\r\nHost: x\r\n\r\n",
            &request);
  ASSERT_EQ(result.status, HttpParseStatus::kComplete);
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.path, "/heap/x");
  ASSERT_EQ(request.query.size(), 4u);
  EXPECT_EQ(*request.QueryValue("format"), "pprof");
  EXPECT_EQ(*request.QueryValue("seconds"), "3");
  EXPECT_EQ(*request.QueryValue("flag"), "");
  EXPECT_EQ(*request.QueryValue("a b"), "c d");
  EXPECT_TRUE(request.body.empty());
}

TEST(HttpParserTest, ParsesBodyWithContentLength) {
  AdminRequest request;
  std::string text = "PUT /config HTTP/1.1\r\nContent-Length: 14\r\n\r\ndirty_decay=5s";
  HttpParseResult result = Parse(text, &request);
  ASSERT_EQ(result.status, HttpParseStatus::kComplete);
  EXPECT_EQ(request.body, "dirty_decay=5s");
  EXPECT_EQ(result.consumed, text.size());
}

TEST(HttpParserTest, WaitsForEveryPrefix) {
  const std::string text = "POST /purge HTTP/1.0\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
  for (size_t length = 0; length < text.size(); length++) {
    EXPECT_EQ(Parse(text.substr(0, length)).status, HttpParseStatus::kIncomplete)
        << "prefix of " << length << " bytes";
  }
  EXPECT_EQ(Parse(text).status, HttpParseStatus::kComplete);
}

struct BadCase {
  const char* name;
  std::string text;
  int status;
};

class HttpParserRejectTest : public testing::TestWithParam<BadCase> {};

TEST_P(HttpParserRejectTest, ReturnsClientError) {
  HttpParseResult result = Parse(GetParam().text);
  ASSERT_EQ(result.status, HttpParseStatus::kError);
  EXPECT_EQ(result.error_status, GetParam().status);
  EXPECT_STRNE(result.error_message, "");
}

const HttpLimits kDefaults;

INSTANTIATE_TEST_SUITE_P(
    Corpus, HttpParserRejectTest,
    testing::Values(
        BadCase{"Garbage", std::string("\x16\x03\x01\x02\x00\x01", 6), 400},
        BadCase{"NulInMethod", std::string("GE\0T / HTTP/1.1\r\n\r\n", 19), 400},
        BadCase{"NoVersion", "GET /\r\n\r\n", 400},
        BadCase{"Http2", "GET / HTTP/2.0\r\n\r\n", 400},
        BadCase{"AbsoluteTarget", "GET http://x/ HTTP/1.1\r\n\r\n", 400},
        BadCase{"BareLf", "GET / HTTP/1.1\n\n", 400},
        BadCase{"BareCrLines", "GET / HTTP/1.1\rHost: x\r\r", 400},
        BadCase{"BareCrInRequestLine", "GET /\r HTTP/1.1\r\n\r\n", 400},
        BadCase{"BareCrInIncompleteHeader", "GET / HTTP/1.1\r\nA: b\rc", 400},
        BadCase{"BareCrInHeader", "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 400},
        BadCase{"BadEscape", "GET /%zz HTTP/1.1\r\n\r\n", 400},
        BadCase{"EncodedNul", "GET /a%00 HTTP/1.1\r\n\r\n", 400},
        BadCase{"TruncatedEscape", "GET /a% HTTP/1.1\r\n\r\n", 400},
        BadCase{"ControlInTarget", "GET /a\x01 HTTP/1.1\r\n\r\n", 400},
        BadCase{"HeaderWithoutColon", "GET / HTTP/1.1\r\nHost\r\n\r\n", 400},
        BadCase{"FoldedHeader", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400},
        BadCase{"SpaceInHeaderName", "GET / HTTP/1.1\r\nA b: c\r\n\r\n", 400},
        BadCase{"ControlInValue", "GET / HTTP/1.1\r\nA: \x01\r\n\r\n", 400},
        BadCase{"NegativeLength", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        BadCase{"ConflictingLengths",
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        BadCase{"HugeLength", "POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n", 413},
        BadCase{"BodyOverLimit", "POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413},
        BadCase{"Chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                411},
        BadCase{"BodyWithoutLength", "POST /purge HTTP/1.1\r\n\r\nabc", 411},
        BadCase{"PutWithoutLength", "PUT /config HTTP/1.1\r\n\r\n", 411},
        BadCase{"LongTarget", "GET /" + std::string(kDefaults.max_request_line, 'a'), 414},
        BadCase{"LongCompleteLine",
                "GET /" + std::string(kDefaults.max_request_line, 'a') + " HTTP/1.1\r\n\r\n",
                414},
        BadCase{"HugeHeader",
                "GET / HTTP/1.1\r\nA: " + std::string(kDefaults.max_header_bytes, 'b'), 431},
        BadCase{"ManyHeaders",
                [] {
                  std::string text = "GET / HTTP/1.1\r\n";
                  for (int i = 0; i <= kDefaults.max_headers; i++) text += "A: b\r\n";
                  return text + "\r\n";
                }(),
                431}),
    [](const testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(HttpParserTest, PercentDecodeRejectsBadEscapes) {
  std::string out;
  EXPECT_TRUE(PercentDecode("a%2Fb+c", false, &out));
  EXPECT_EQ(out, "a/b+c");
  EXPECT_TRUE(PercentDecode("a+c", true, &out));
  EXPECT_EQ(out, "a c");
  EXPECT_FALSE(PercentDecode("%4", false, &out));
  EXPECT_FALSE(PercentDecode("%g0", false, &out));
  EXPECT_FALSE(PercentDecode("%00", false, &out));
}

TEST(HttpParserTest, FormatsResponse) {
  AdminResponse response;
  response.status = 404;
  response.body = "{}";
  response.headers.emplace_back("X-Test", "1");
  EXPECT_EQ(FormatHttpResponse(response),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nConnection: close\r\nX-Test: 1\r\n\r\n{}");
}

// Feeds random bytes and mutations of valid requests. An error must carry a
// 4xx, and a complete request must not claim more bytes than it was given.
// The iteration count bounds the run, and the libFuzzer target
// (http_parser_fuzz.cc) goes further.
TEST(HttpParserTest, SurvivesRandomAndMutatedInput) {
  const std::string seeds[] = {
      "GET /stats HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
      "PUT /config HTTP/1.1\r\nContent-Length: 14\r\n\r\ndirty_decay=5s",
      "GET /tenants/a%20b?limit=3&x=%41 HTTP/1.0\r\n\r\n",
  };
  std::mt19937_64 random(12345);
  HttpLimits small;
  small.max_request_line = 64;
  small.max_header_bytes = 128;
  small.max_headers = 4;
  small.max_body = 32;
  for (int iteration = 0; iteration < 200000; iteration++) {
    std::string input;
    if (iteration % 4 == 0) {
      input.resize(random() % 300);
      for (char& c : input) c = static_cast<char>(random());
    } else {
      input = seeds[random() % 3];
      int mutations = 1 + static_cast<int>(random() % 8);
      for (int m = 0; m < mutations && !input.empty(); m++) {
        size_t at = random() % input.size();
        switch (random() % 4) {
          case 0: input[at] = static_cast<char>(random()); break;
          case 1: input.erase(at, 1 + random() % 4); break;
          case 2: input.insert(at, std::string(1 + random() % 40, static_cast<char>(random())));
            break;
          case 3: input.insert(at, input.substr(at, random() % 16)); break;
        }
      }
    }
    AdminRequest request;
    HttpParseResult result =
        ParseHttpRequest(input, iteration % 2 == 0 ? small : HttpLimits(), &request);
    if (result.status == HttpParseStatus::kError) {
      ASSERT_GE(result.error_status, 400) << testing::PrintToString(input);
      ASSERT_LT(result.error_status, 500) << testing::PrintToString(input);
    } else if (result.status == HttpParseStatus::kComplete) {
      ASSERT_LE(result.consumed, input.size());
      ASSERT_FALSE(request.path.empty());
      ASSERT_EQ(request.path[0], '/');
    }
  }
}

}  // namespace
}  // namespace memward::accounting
