// The admin server's endpoint table.
//
// Services register the endpoints they serve (the cgroup monitor GET
// /cgroup, the leak detector GET /leaks, ...); the admin server parses each
// HTTP request and calls the matching handler on the warden thread. Handlers
// may allocate (the warden thread's allocations are memward's own) but must
// not block on locks that the allocation path holds.
//
// Thread safety: registration takes a mutex; lookups copy the entry under it.
#ifndef MEMWARD_ACCOUNTING_ADMIN_ENDPOINTS_H_
#define MEMWARD_ACCOUNTING_ADMIN_ENDPOINTS_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memward::accounting {

struct AdminRequest {
  std::string method;  // "GET", "POST", "PUT"
  std::string path;    // decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  std::string body;
  // The part of the path after a prefix endpoint's "/*" ("acme" for
  // /tenants/acme registered as "/tenants/*"); empty otherwise.
  std::string path_suffix;

  // Returns the first query value for `key`, or nullptr.
  const std::string* QueryValue(std::string_view key) const;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers, such as Content-Encoding for a gzipped profile.
  std::vector<std::pair<std::string, std::string>> headers;

  // Sets a 4xx or 5xx status with a JSON body {"error": message}.
  void SetError(int status_code, std::string_view message);
};

using AdminHandler = void (*)(const AdminRequest& request, AdminResponse* response);

// Registers `handler` for `method` and `path`. A path ending in "/*" matches
// every path below it. Returns false when the table is full or the pair is
// registered already. `summary` is shown by GET / (the endpoint index).
bool RegisterAdminEndpoint(const char* method, const char* path, const char* summary,
                           AdminHandler handler);

struct AdminEndpointMatch {
  AdminHandler handler = nullptr;
  // True when the path matched but not with this method (405, not 404).
  bool path_known = false;
  std::string path_suffix;
};

AdminEndpointMatch FindAdminEndpoint(std::string_view method, std::string_view path);

struct AdminEndpointInfo {
  std::string method, path, summary;
};
std::vector<AdminEndpointInfo> ListAdminEndpoints();

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_ADMIN_ENDPOINTS_H_
