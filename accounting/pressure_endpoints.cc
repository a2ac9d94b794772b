// GET /pressure, GET /decisions and POST /reclaim on the admin endpoint table.
#include "accounting/pressure_endpoints.h"

#include <pthread.h>

#include <string>

#include "accounting/admin_endpoints.h"
#include "accounting/decision_log.h"
#include "accounting/pressure_service.h"
#include "base/json_writer.h"
#include "base/settings.h"

namespace memward::accounting {
namespace {

void HandlePressure(const AdminRequest& request, AdminResponse* response) {
  WritePressureJson(&response->body);
}

void HandleDecisions(const AdminRequest& request, AdminResponse* response) {
  WriteDecisionsJson(&response->body);
}

void HandleReclaim(const AdminRequest& request, AdminResponse* response) {
  const std::string* text = request.QueryValue("bytes");
  uint64_t bytes = 0;
  if (text == nullptr || !ParseReclaimBytes(*text, &bytes)) {
    response->SetError(400, "invalid or missing bytes: expected ?bytes=SIZE, a number of bytes "
                            "with an optional k, m or g suffix, at most 64g");
    return;
  }
  const uint64_t freed = ReclaimNow(bytes);
  base::JsonWriter json(&response->body);
  json.BeginObject();
  json.Key("requested_bytes").Uint(bytes);
  json.Key("freed_bytes").Uint(freed);
  json.EndObject();
}

// Guarded by g_register_lock.
pthread_mutex_t g_register_lock = PTHREAD_MUTEX_INITIALIZER;
bool g_registered = false;
bool g_registration_ok = false;

}  // namespace

bool ParseReclaimBytes(std::string_view text, uint64_t* bytes) {
  // The pressure_wake_bytes row has the size form and a 64 GiB maximum.
  const base::SettingSpec* spec = base::FindSetting("pressure_wake_bytes", 19);
  if (spec == nullptr) return false;
  int64_t value = 0;
  base::SettingError error;
  if (!base::ParseSettingValue(*spec, text.data(), text.size(), &value, &error)) return false;
  *bytes = static_cast<uint64_t>(value);
  return true;
}

bool RegisterPressureEndpoints() {
  pthread_mutex_lock(&g_register_lock);
  if (!g_registered) {
    g_registration_ok = RegisterAdminEndpoint("GET", "/pressure",
                               "pressure level, last cgroup reading, thresholds, reclaimers",
                               HandlePressure) &&
         RegisterAdminEndpoint("GET", "/decisions",
                               "the warden's recent pressure decisions and their counts",
                               HandleDecisions) &&
         RegisterAdminEndpoint("POST", "/reclaim",
                               "ask the reclaimers for ?bytes=SIZE and purge dirty pages",
                               HandleReclaim);
    g_registered = true;
  }
  const bool ok = g_registration_ok;
  pthread_mutex_unlock(&g_register_lock);
  return ok;
}

}  // namespace memward::accounting
