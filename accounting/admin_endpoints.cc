#include "accounting/admin_endpoints.h"

#include <pthread.h>

#include "base/json_writer.h"

namespace memward::accounting {
namespace {

struct Entry {
  const char* method;
  const char* path;
  const char* summary;
  AdminHandler handler;
};

constexpr int kMaxEndpoints = 64;
// Guards g_entries and g_count. A plain pthread mutex, because a
// std::mutex's lock order relative to fork is the same and this needs no
// constructor.
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
Entry g_entries[kMaxEndpoints];
int g_count = 0;

bool IsPrefixPattern(std::string_view pattern) {
  return pattern.size() >= 2 && pattern.substr(pattern.size() - 2) == "/*";
}

// Returns whether `path` matches `pattern`, and the part below a prefix.
bool MatchPath(std::string_view pattern, std::string_view path, std::string* suffix) {
  if (!IsPrefixPattern(pattern)) return pattern == path;
  std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // keeps the '/'
  if (path.size() <= prefix.size() || path.substr(0, prefix.size()) != prefix) return false;
  *suffix = std::string(path.substr(prefix.size()));
  return true;
}

}  // namespace

const std::string* AdminRequest::QueryValue(std::string_view key) const {
  for (const auto& [name, value] : query) {
    if (name == key) return &value;
  }
  return nullptr;
}

void AdminResponse::SetError(int status_code, std::string_view message) {
  status = status_code;
  content_type = "application/json";
  body.clear();
  base::JsonWriter json(&body);
  json.BeginObject().Key("error").String(message).EndObject();
  body.push_back('\n');
}

bool RegisterAdminEndpoint(const char* method, const char* path, const char* summary,
                           AdminHandler handler) {
  pthread_mutex_lock(&g_lock);
  bool added = false;
  bool duplicate = false;
  for (int i = 0; i < g_count; i++) {
    if (std::string_view(g_entries[i].method) == method &&
        std::string_view(g_entries[i].path) == path) {
      duplicate = true;
    }
  }
  if (!duplicate && g_count < kMaxEndpoints) {
    g_entries[g_count++] = Entry{method, path, summary, handler};
    added = true;
  }
  pthread_mutex_unlock(&g_lock);
  return added;
}

AdminEndpointMatch FindAdminEndpoint(std::string_view method, std::string_view path) {
  AdminEndpointMatch match;
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_count; i++) {
    std::string suffix;
    if (!MatchPath(g_entries[i].path, path, &suffix)) continue;
    match.path_known = true;
    if (method != g_entries[i].method) continue;
    match.handler = g_entries[i].handler;
    match.path_suffix = std::move(suffix);
    break;
  }
  pthread_mutex_unlock(&g_lock);
  return match;
}

std::vector<AdminEndpointInfo> ListAdminEndpoints() {
  std::vector<AdminEndpointInfo> endpoints;
  pthread_mutex_lock(&g_lock);
  for (int i = 0; i < g_count; i++) {
    endpoints.push_back({g_entries[i].method, g_entries[i].path, g_entries[i].summary});
  }
  pthread_mutex_unlock(&g_lock);
  return endpoints;
}

}  // namespace memward::accounting
