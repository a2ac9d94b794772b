// The admin server's HTTP/1.1 request parser and response writer.
//
// The parser takes the bytes received so far on a connection and returns
// whether they contain a complete request, need more bytes, or can never
// become a valid request. It re-parses from the first byte on each call,
// which costs at most the header limit (16 KiB by default) per read. It
// checks every limit before it waits for more input, so a client can make
// the server keep at most the limits' sum in memory.
//
// Supported: origin-form targets ("/path?query"), HTTP/1.0 and HTTP/1.1,
// bodies with Content-Length. Rejected: chunked bodies (411), header folding,
// control characters, and anything over a limit (413, 414, 431).
#ifndef MEMWARD_ACCOUNTING_HTTP_PARSER_H_
#define MEMWARD_ACCOUNTING_HTTP_PARSER_H_

#include <stddef.h>

#include <string>
#include <string_view>

#include "accounting/admin_endpoints.h"

namespace memward::accounting {

struct HttpLimits {
  size_t max_request_line = 8 * 1024;  // bytes, CRLF included; over it: 414
  size_t max_header_bytes = 16 * 1024;  // bytes after the request line; over it: 431
  int max_headers = 64;                 // header lines; over it: 431
  size_t max_body = 64 * 1024;          // bytes of Content-Length; over it: 413
};

enum class HttpParseStatus { kIncomplete, kComplete, kError };

struct HttpParseResult {
  HttpParseStatus status = HttpParseStatus::kIncomplete;
  int error_status = 0;               // with kError: the 4xx status to send
  const char* error_message = "";     // with kError: a static description
  size_t consumed = 0;                // with kComplete: bytes of the request
};

// Parses the request at the start of `input` into `request` (filled only
// when the result is kComplete).
HttpParseResult ParseHttpRequest(std::string_view input, const HttpLimits& limits,
                                 AdminRequest* request);

// Decodes %XX escapes (and '+' as a space when `plus_is_space`). Returns
// false on an invalid escape or a decoded NUL byte.
bool PercentDecode(std::string_view text, bool plus_is_space, std::string* out);

// Returns the reason phrase for `status` ("Not Found"), or "Unknown".
const char* HttpReasonPhrase(int status);

// Writes `response` as an HTTP/1.1 message with Content-Length and
// "Connection: close".
std::string FormatHttpResponse(const AdminResponse& response);

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_HTTP_PARSER_H_
