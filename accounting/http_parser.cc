#include "accounting/http_parser.h"

#include <string.h>

namespace memward::accounting {
namespace {

constexpr size_t kMaxMethod = 16;

HttpParseResult Error(int status, const char* message) {
  HttpParseResult result;
  result.status = HttpParseStatus::kError;
  result.error_status = status;
  result.error_message = message;
  return result;
}

// RFC 9110 token characters, which header names and methods use.
bool IsTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// Visible ASCII, which a request target may contain.
bool IsTargetChar(unsigned char c) { return c > 0x20 && c < 0x7f; }

// Header values may contain tabs and visible bytes, including obs-text.
bool IsValueChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  }
  return true;
}

std::string_view TrimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
  return -1;
}

// Checks the bytes received so far against the request line's form, so that
// garbage is rejected at once instead of after the line limit.
bool CouldBeRequestLine(std::string_view prefix) {
  size_t i = 0;
  while (i < prefix.size() && i < kMaxMethod && IsTokenChar(prefix[i])) i++;
  if (i == prefix.size()) return true;
  return i > 0 && prefix[i] == ' ';
}

// Splits "a=1&b&c=%20" into decoded pairs. Returns false on a bad escape.
bool ParseQuery(std::string_view query,
                std::vector<std::pair<std::string, std::string>>* pairs) {
  pairs->clear();
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;

    size_t equals = pair.find('=');
    std::string key, value;
    if (!PercentDecode(pair.substr(0, equals), true, &key)) return false;
    if (equals != std::string_view::npos && !PercentDecode(pair.substr(equals + 1), true, &value)) {
      return false;
    }
    pairs->emplace_back(std::move(key), std::move(value));
  }
  return true;
}

// Splits "METHOD SP target SP HTTP/1.x" into `request`. Returns 0 or a status.
int ParseRequestLine(std::string_view line, AdminRequest* request, const char** message) {
  size_t first_space = line.find(' ');
  size_t last_space = line.rfind(' ');
  if (first_space == std::string_view::npos || first_space == last_space) {
    *message = "malformed request line; expected METHOD /path HTTP/1.1";
    return 400;
  }
  std::string_view method = line.substr(0, first_space);
  std::string_view target = line.substr(first_space + 1, last_space - first_space - 1);
  std::string_view version = line.substr(last_space + 1);

  if (method.empty() || method.size() > kMaxMethod) {
    *message = "invalid method";
    return 400;
  }
  for (char c : method) {
    if (!IsTokenChar(c)) {
      *message = "invalid method";
      return 400;
    }
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    *message = "unsupported HTTP version; expected HTTP/1.1 or HTTP/1.0";
    return 400;
  }
  if (target.empty() || target[0] != '/') {
    *message = "invalid request target; expected a path starting with /";
    return 400;
  }
  for (char c : target) {
    if (!IsTargetChar(c)) {
      *message = "invalid character in the request target";
      return 400;
    }
  }

  size_t question = target.find('?');
  std::string_view raw_path = target.substr(0, question);
  if (!PercentDecode(raw_path, false, &request->path)) {
    *message = "invalid percent escape in the path";
    return 400;
  }
  request->method = std::string(method);
  if (question == std::string_view::npos) return 0;
  if (!ParseQuery(target.substr(question + 1), &request->query)) {
    *message = "invalid percent escape in the query";
    return 400;
  }
  return 0;
}

struct HeaderFacts {
  bool has_length = false;
  size_t content_length = 0;
  bool chunked = false;
};

// Parses one "Name: value" line into `facts`. Returns 0 or a status.
int ParseHeaderLine(std::string_view line, const HttpLimits& limits, HeaderFacts* facts,
                    const char** message) {
  if (line[0] == ' ' || line[0] == '\t') {
    *message = "folded header lines are not accepted";
    return 400;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    *message = "malformed header line; expected Name: value";
    return 400;
  }
  std::string_view name = line.substr(0, colon);
  for (char c : name) {
    if (!IsTokenChar(c)) {
      *message = "invalid character in a header name";
      return 400;
    }
  }
  std::string_view value = TrimSpaces(line.substr(colon + 1));
  for (char c : value) {
    if (!IsValueChar(static_cast<unsigned char>(c))) {
      *message = "invalid character in a header value";
      return 400;
    }
  }
  if (EqualsIgnoringCase(name, "transfer-encoding")) {
    facts->chunked = true;
    return 0;
  }
  if (!EqualsIgnoringCase(name, "content-length")) return 0;
  if (value.empty() || value.size() > 12) {
    *message = "invalid Content-Length";
    return value.size() > 12 ? 413 : 400;
  }
  size_t length = 0;
  for (char c : value) {
    if (c < '0' || c > '9') {
      *message = "invalid Content-Length";
      return 400;
    }
    length = length * 10 + static_cast<size_t>(c - '0');
  }
  if (facts->has_length && facts->content_length != length) {
    *message = "conflicting Content-Length headers";
    return 400;
  }
  if (length > limits.max_body) {
    *message = "request body too large";
    return 413;
  }
  facts->has_length = true;
  facts->content_length = length;
  return 0;
}

}  // namespace

bool PercentDecode(std::string_view text, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(text.size());
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (c == '+' && plus_is_space) {
      out->push_back(' ');
      continue;
    }
    if (c != '%') {
      out->push_back(c);
      continue;
    }
    if (i + 2 >= text.size()) return false;
    int high = HexValue(text[i + 1]);
    int low = HexValue(text[i + 2]);
    if (high < 0 || low < 0 || (high == 0 && low == 0)) return false;
    out->push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return true;
}

namespace {

// Returns whether `text` has a CR that is not the start of a CRLF. A CR at
// the end may be the first half of a CRLF still to arrive. RFC 9112 (2.2)
// lets a recipient reject a bare CR.
bool HasBareCarriageReturn(std::string_view text) {
  for (size_t i = text.find('\r'); i != std::string_view::npos; i = text.find('\r', i + 1)) {
    if (i + 1 < text.size() && text[i + 1] != '\n') return true;
  }
  return false;
}

}  // namespace

HttpParseResult ParseHttpRequest(std::string_view input, const HttpLimits& limits,
                                 AdminRequest* request) {
  // The request line.
  size_t line_end = input.find("\r\n");
  if (line_end == std::string_view::npos) {
    if (!CouldBeRequestLine(input)) {
      return Error(400, "malformed request line; expected METHOD /path HTTP/1.1");
    }
    if (input.find('\n') != std::string_view::npos || HasBareCarriageReturn(input)) {
      return Error(400, "request lines must end with CRLF");
    }
    if (input.size() >= limits.max_request_line) return Error(414, "request line too long");
    return HttpParseResult{};
  }
  if (line_end + 2 > limits.max_request_line) return Error(414, "request line too long");
  if (input.substr(0, line_end).find('\r') != std::string_view::npos) {
    return Error(400, "request lines must end with CRLF");
  }
  AdminRequest parsed;
  const char* message = "";
  if (int status = ParseRequestLine(input.substr(0, line_end), &parsed, &message); status != 0) {
    return Error(status, message);
  }

  // The header lines, up to the empty line.
  HeaderFacts facts;
  size_t cursor = line_end + 2;
  const size_t headers_start = cursor;
  int header_count = 0;
  while (true) {
    size_t end = input.find("\r\n", cursor);
    size_t limit_end = headers_start + limits.max_header_bytes;
    if (end == std::string_view::npos) {
      if (input.size() >= limit_end) return Error(431, "request header fields too large");
      std::string_view partial = input.substr(cursor);
      if (partial.find('\n') != std::string_view::npos || HasBareCarriageReturn(partial)) {
        return Error(400, "header lines must end with CRLF");
      }
      return HttpParseResult{};
    }
    if (end + 2 > limit_end) return Error(431, "request header fields too large");
    std::string_view line = input.substr(cursor, end - cursor);
    cursor = end + 2;
    if (line.empty()) break;
    if (line.find('\n') != std::string_view::npos || line.find('\r') != std::string_view::npos) {
      return Error(400, "header lines must end with CRLF");
    }
    if (++header_count > limits.max_headers) return Error(431, "too many header fields");
    if (int status = ParseHeaderLine(line, limits, &facts, &message); status != 0) {
      return Error(status, message);
    }
  }

  // The body.
  if (facts.chunked) {
    return Error(411, "chunked bodies are not supported; send Content-Length");
  }
  if (!facts.has_length && (parsed.method == "PUT" || parsed.method == "POST") &&
      cursor < input.size()) {
    return Error(411, "a body needs a Content-Length header");
  }
  if (!facts.has_length && parsed.method == "PUT") {
    return Error(411, "PUT needs a body with a Content-Length header");
  }
  size_t body_length = facts.has_length ? facts.content_length : 0;
  if (input.size() - cursor < body_length) return HttpParseResult{};
  parsed.body = std::string(input.substr(cursor, body_length));
  *request = std::move(parsed);
  HttpParseResult result;
  result.status = HttpParseStatus::kComplete;
  result.consumed = cursor + body_length;
  return result;
}

const char* HttpReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

std::string FormatHttpResponse(const AdminResponse& response) {
  std::string out;
  out.reserve(128 + response.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += HttpReasonPhrase(response.status);
  out += "\r\nContent-Type: ";
  out += response.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(response.body.size());
  out += "\r\nConnection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "\r\n";
  out += response.body;
  return out;
}

}  // namespace memward::accounting
