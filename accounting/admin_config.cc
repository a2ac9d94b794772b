// GET /config, PUT /config and POST /purge.
//
// PUT /config takes a body in MEMWARD_CONF's form ("dirty_decay=5s,
// muzzy_decay=0") and changes only settings whose row is marked `runtime`.
// Every pair is checked before any is applied, so a rejected request
// changes nothing. A setting named twice is rejected, so a body cannot make
// the server apply one setting thousands of times.
#include <string_view>
#include <vector>

#include "accounting/admin_endpoints.h"
#include "accounting/admin_handlers.h"
#include "alloc/arena_decay.h"
#include "alloc/bootstrap.h"
#include "alloc/engine.h"
#include "alloc/purge.h"
#include "base/json_writer.h"
#include "base/log.h"
#include "base/settings.h"

namespace memward::accounting {
namespace {

using base::JsonWriter;
using base::SettingKind;
using base::SettingSpec;

std::string FormatValue(const SettingSpec& spec) {
  const base::Settings& settings = alloc::CurrentSettings();
  if (spec.kind == SettingKind::kText) return settings.GetText(spec.id);
  char text[64];
  base::FormatSettingValue(spec, settings.Get(spec.id), text, sizeof(text));
  return text;
}

void WriteConfig(JsonWriter& json) {
  json.BeginObject();
  json.Key("settings").BeginArray();
  for (const SettingSpec& spec : base::kSettingSpecs) {
    json.BeginObject();
    json.Key("name").String(spec.name);
    json.Key("value").String(FormatValue(spec));
    if (spec.kind == SettingKind::kText) {
      json.Key("default").String(spec.default_text);
    } else {
      char text[64];
      base::FormatSettingValue(spec, spec.default_value, text, sizeof(text));
      json.Key("default").String(text);
    }
    json.Key("accepted").String(base::DescribeSettingKind(spec));
    json.Key("runtime").Bool(spec.runtime);
    json.Key("help").String(spec.help);
    json.EndObject();
  }
  json.EndArray();
  json.EndObject();
}

void HandleGetConfig(const AdminRequest& request, AdminResponse* response) {
  JsonWriter json(&response->body);
  WriteConfig(json);
  response->body.push_back('\n');
}

// Sets a decay time (milliseconds, -1 for never) for new arenas and for
// every existing one. jemalloc 5.3 has no single control for all arenas,
// and an index that has no arena yet fails harmlessly.
void ApplyDecay(const char* kind, int64_t milliseconds) {
  ssize_t value = static_cast<ssize_t>(milliseconds);
  char name[64];
  base::Format(name, sizeof(name), "arenas.%s_decay_ms", kind);
  mwje_mallctl(name, nullptr, nullptr, &value, sizeof(value));
  unsigned narenas = 0;
  size_t length = sizeof(narenas);
  mwje_mallctl("arenas.narenas", &narenas, &length, nullptr, 0);
  for (unsigned arena = 0; arena < narenas; arena++) {
    base::Format(name, sizeof(name), "arena.%u.%s_decay_ms", arena, kind);
    mwje_mallctl(name, nullptr, nullptr, &value, sizeof(value));
  }
}

void ApplySetting(base::SettingId id, int64_t value) {
  if (id == base::SettingId::kMuzzyDecay) ApplyDecay("muzzy", value);
  alloc::StoreRuntimeSetting(id, value);
  // Both decays of the arenas memward creates depend on the two settings.
  if (id == base::SettingId::kDirtyDecay) alloc::SetDirtyDecayOfArenas(value);
  if (id == base::SettingId::kScopeDirtyDecay) {
    alloc::SetDirtyDecayOfArenas(alloc::DirtyDecayInForce());
  }
}

struct Change {
  const SettingSpec* spec;
  int64_t value;
};

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' ||
                           text.front() == '\r' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\n' || text.back() == '\r' ||
                           text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// Checks one "key=value" pair. Returns false with the response set.
bool CheckPair(std::string_view pair, std::vector<Change>* changes, AdminResponse* response) {
  size_t equals = pair.find('=');
  std::string_view key = Trim(pair.substr(0, equals));
  std::string_view value =
      equals == std::string_view::npos ? std::string_view() : Trim(pair.substr(equals + 1));
  const SettingSpec* spec = base::FindSetting(key.data(), key.size());
  if (spec == nullptr) {
    response->SetError(400, "unknown setting \"" + std::string(key) +
                                "\"; GET /config lists the settings");
    return false;
  }
  if (!spec->runtime) {
    response->SetError(409, "setting " + std::string(spec->name) +
                                " cannot change in a running process; set it in "
                                "MEMWARD_CONF and restart");
    return false;
  }
  for (const Change& change : *changes) {
    if (change.spec == spec) {
      response->SetError(400, "setting " + std::string(spec->name) +
                                  " appears more than once; send each setting once");
      return false;
    }
  }
  int64_t parsed = 0;
  base::SettingError error;
  if (!base::ParseSettingValue(*spec, value.data(), value.size(), &parsed, &error)) {
    base::SettingProblem problem{error, key.data(), key.size(), value.data(), value.size(),
                                 spec, alloc::CurrentSettings().Get(spec->id)};
    if (spec->kind == base::SettingKind::kText) {
      problem.kept_text = alloc::CurrentSettings().GetText(spec->id);
    }
    char message[base::kMaxLogMessage];
    base::FormatSettingProblem(problem, message, sizeof(message));
    std::string text = message;
    const std::string_view prefix = "MEMWARD_CONF: ";
    if (text.rfind(prefix, 0) == 0) text.erase(0, prefix.size());
    response->SetError(400, text);
    return false;
  }
  changes->push_back(Change{spec, parsed});
  return true;
}

void HandlePutConfig(const AdminRequest& request, AdminResponse* response) {
  std::string_view body = Trim(request.body);
  if (body.empty()) {
    response->SetError(400, "empty body; send key=value pairs separated by commas, "
                            "such as dirty_decay=5s");
    return;
  }
  std::vector<Change> changes;
  while (!body.empty()) {
    size_t comma = body.find(',');
    std::string_view pair = body.substr(0, comma);
    body = comma == std::string_view::npos ? std::string_view() : body.substr(comma + 1);
    if (Trim(pair).empty()) continue;
    if (!CheckPair(pair, &changes, response)) return;
  }
  for (const Change& change : changes) {
    ApplySetting(change.spec->id, change.value);
    char text[64];
    base::FormatSettingValue(*change.spec, change.value, text, sizeof(text));
    base::Log("admin server: setting %s changed to %s", change.spec->name, text);
  }
  JsonWriter json(&response->body);
  WriteConfig(json);
  response->body.push_back('\n');
}

void HandlePurge(const AdminRequest& request, AdminResponse* response) {
  alloc::HeapStatistics before = alloc::ReadHeapStatistics();
  size_t purged = alloc::PurgeUnusedPages();
  alloc::HeapStatistics after = alloc::ReadHeapStatistics();
  JsonWriter json(&response->body);
  json.BeginObject();
  json.Key("purged_bytes").Uint(purged);
  json.Key("resident_before_bytes").Uint(before.resident);
  json.Key("resident_after_bytes").Uint(after.resident);
  json.EndObject();
  response->body.push_back('\n');
}

}  // namespace

void RegisterConfigEndpoints() {
  RegisterAdminEndpoint("GET", "/config", "every setting with its value and whether it "
                        "can change at run time", HandleGetConfig);
  RegisterAdminEndpoint("PUT", "/config", "change run-time settings; body key=value,...",
                        HandlePutConfig);
  RegisterAdminEndpoint("POST", "/purge", "return unused allocator pages to the kernel now",
                        HandlePurge);
}

}  // namespace memward::accounting
