// libFuzzer target for the admin server's request parser. Built with clang
// (-fsanitize=fuzzer,address,undefined) when clang++ is installed; CTest
// runs it for a bounded time (see tests/unit/CMakeLists.txt).
#include <stddef.h>
#include <stdint.h>

#include <string_view>

#include "accounting/http_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace memward::accounting;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  HttpLimits limits;
  limits.max_request_line = 256;
  limits.max_header_bytes = 512;
  limits.max_headers = 8;
  limits.max_body = 128;
  AdminRequest request;
  HttpParseResult result = ParseHttpRequest(input, limits, &request);
  if (result.status == HttpParseStatus::kError &&
      (result.error_status < 400 || result.error_status >= 500)) {
    __builtin_trap();
  }
  if (result.status == HttpParseStatus::kComplete) {
    if (result.consumed > size || request.path.empty() || request.path[0] != '/') {
      __builtin_trap();
    }
    AdminResponse response;
    response.body = request.body;
    FormatHttpResponse(response);
  }
  return 0;
}
