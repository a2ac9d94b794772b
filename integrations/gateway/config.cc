// Validation of the gateway's JSON config. Every check throws ConfigError
// with the field's JSON path and the accepted form, so an operator can fix
// the file from the message alone.
#include "config.h"

#include <netdb.h>
#include <sys/socket.h>

#include <boost/json.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace memward::gateway {
namespace {

namespace json = boost::json;
using boost::asio::ip::tcp;

[[noreturn]] void Fail(std::string_view field, std::string_view problem) {
  throw ConfigError(std::string(field) + ": " + std::string(problem));
}

// Reads the fields of one JSON object and remembers which ones were read, so
// that Finish() can reject fields that no reader requested (misspellings).
class ObjectReader {
 public:
  ObjectReader(const json::value& value, std::string path) : path_(std::move(path)) {
    if (!value.is_object()) Fail(Display(), "must be a JSON object");
    object_ = &value.as_object();
  }

  const std::string& path() const { return path_; }
  std::string FieldPath(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  const json::value* Find(std::string_view key) {
    known_.insert(std::string(key));
    return object_->if_contains(key);
  }

  const json::value& Require(std::string_view key) {
    const json::value* value = Find(key);
    if (value == nullptr) Fail(FieldPath(key), "is required");
    return *value;
  }

  bool Bool(std::string_view key, bool fallback) {
    const json::value* value = Find(key);
    if (value == nullptr) return fallback;
    if (!value->is_bool()) Fail(FieldPath(key), "must be true or false");
    return value->as_bool();
  }

  std::int64_t Integer(std::string_view key, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) {
    const json::value* value = Find(key);
    if (value == nullptr) return fallback;
    return CheckInteger(*value, FieldPath(key), min, max);
  }

  Milliseconds Millis(std::string_view key, Milliseconds fallback, std::int64_t min) {
    // One day is far above any sensible timeout and keeps sums from overflowing.
    constexpr std::int64_t kMaxMillis = 24LL * 3600 * 1000;
    return Milliseconds(Integer(key, fallback.count(), min, kMaxMillis));
  }

  std::string String(std::string_view key, std::string fallback) {
    const json::value* value = Find(key);
    if (value == nullptr) return fallback;
    if (!value->is_string()) Fail(FieldPath(key), "must be a string");
    return std::string(value->as_string());
  }

  std::uint64_t Size(std::string_view key, std::uint64_t fallback, std::uint64_t min,
                     std::uint64_t max);

  void Finish() const {
    for (const auto& entry : *object_) {
      if (known_.count(std::string(entry.key())) == 0) {
        Fail(FieldPath(entry.key()), "is not a known field (see integrations/gateway/README.md)");
      }
    }
  }

  static std::int64_t CheckInteger(const json::value& value, const std::string& field,
                                   std::int64_t min, std::int64_t max) {
    std::int64_t number = 0;
    if (value.is_int64()) {
      number = value.as_int64();
    } else if (value.is_uint64() && value.as_uint64() <= std::uint64_t(max)) {
      number = std::int64_t(value.as_uint64());
    } else {
      Fail(field, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    if (number < min || number > max) {
      Fail(field, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                      ", not " + std::to_string(number));
    }
    return number;
  }

 private:
  std::string Display() const { return path_.empty() ? "the config" : path_; }

  std::string path_;
  const json::object* object_ = nullptr;
  std::set<std::string> known_;
};

// Parses "512", "64k", "1m" or "2g" (powers of 1024). Returns false when the
// text is not of that form or overflows.
bool ParseSizeText(std::string_view text, std::uint64_t& bytes) {
  if (text.empty()) return false;
  std::uint64_t multiplier = 1;
  switch (text.back()) {
    case 'k': case 'K': multiplier = 1ULL << 10; break;
    case 'm': case 'M': multiplier = 1ULL << 20; break;
    case 'g': case 'G': multiplier = 1ULL << 30; break;
    default: break;
  }
  if (multiplier != 1) text.remove_suffix(1);
  std::uint64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return false;
  if (number > std::numeric_limits<std::uint64_t>::max() / multiplier) return false;
  bytes = number * multiplier;
  return true;
}

std::string DescribeSize(std::uint64_t bytes) {
  if (bytes != 0 && bytes % (1ULL << 30) == 0) return std::to_string(bytes >> 30) + "g";
  if (bytes != 0 && bytes % (1ULL << 20) == 0) return std::to_string(bytes >> 20) + "m";
  if (bytes != 0 && bytes % (1ULL << 10) == 0) return std::to_string(bytes >> 10) + "k";
  return std::to_string(bytes);
}

std::uint64_t ObjectReader::Size(std::string_view key, std::uint64_t fallback, std::uint64_t min,
                                 std::uint64_t max) {
  const json::value* value = Find(key);
  if (value == nullptr) return fallback;
  const std::string field = FieldPath(key);
  const std::string form = "must be a size from " + DescribeSize(min) + " to " + DescribeSize(max) +
                           ": a number of bytes or a string such as \"64k\", \"1m\" or \"2g\"";
  std::uint64_t bytes = 0;
  if (value->is_uint64()) {
    bytes = value->as_uint64();
  } else if (value->is_int64() && value->as_int64() >= 0) {
    bytes = std::uint64_t(value->as_int64());
  } else if (!value->is_string() || !ParseSizeText(value->as_string(), bytes)) {
    Fail(field, form);
  }
  if (bytes < min || bytes > max) Fail(field, form);
  return bytes;
}

// Parses a decimal port number.
bool ParsePort(std::string_view text, std::uint16_t& port) {
  unsigned number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || number > 65535) {
    return false;
  }
  port = std::uint16_t(number);
  return true;
}

// Splits "host:port" or "[v6]:port". Returns false on a malformed text.
bool SplitHostPort(std::string_view text, std::string& host, std::uint16_t& port) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host_part = text.substr(0, colon);
  if (host_part.front() == '[') {
    if (host_part.size() < 3 || host_part.back() != ']') return false;
    host_part = host_part.substr(1, host_part.size() - 2);
  } else if (host_part.find(':') != std::string_view::npos) {
    return false;  // an IPv6 literal needs brackets
  }
  host = std::string(host_part);
  return ParsePort(text.substr(colon + 1), port);
}

bool IsNameCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

void ParseLimits(ObjectReader& reader, Limits& limits) {
  constexpr std::uint64_t kGiB = 1ULL << 30;
  limits.max_body_bytes = reader.Size("max_body_bytes", limits.max_body_bytes, 1, kGiB);
  limits.max_header_bytes = reader.Size("max_header_bytes", limits.max_header_bytes, 1024, 1 << 20);
  limits.max_response_bytes =
      reader.Size("max_response_bytes", limits.max_response_bytes, 1024, kGiB);
  limits.client_idle_timeout = reader.Millis("client_idle_timeout_ms", limits.client_idle_timeout, 1);
  limits.client_read_timeout = reader.Millis("client_read_timeout_ms", limits.client_read_timeout, 1);
  limits.client_write_timeout =
      reader.Millis("client_write_timeout_ms", limits.client_write_timeout, 1);
  limits.upstream_connect_timeout =
      reader.Millis("upstream_connect_timeout_ms", limits.upstream_connect_timeout, 1);
  limits.upstream_header_timeout =
      reader.Millis("upstream_header_timeout_ms", limits.upstream_header_timeout, 1);
  limits.upstream_read_timeout =
      reader.Millis("upstream_read_timeout_ms", limits.upstream_read_timeout, 1);
  limits.shutdown_drain = reader.Millis("shutdown_drain_ms", limits.shutdown_drain, 0);
  limits.retry_after_seconds =
      int(reader.Integer("retry_after_s", limits.retry_after_seconds, 0, 3600));
  reader.Finish();
}

std::vector<std::string> ParseApiKeys(const json::value& value, const std::string& field,
                                      std::set<std::string>& all_keys) {
  if (!value.is_array() || value.as_array().empty()) {
    Fail(field, "must be a non-empty array of strings");
  }
  std::vector<std::string> keys;
  const json::array& array = value.as_array();
  for (std::size_t i = 0; i < array.size(); ++i) {
    const std::string item = field + "[" + std::to_string(i) + "]";
    if (!array[i].is_string()) Fail(item, "must be a string");
    std::string key(array[i].as_string());
    bool printable = std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c < 127; });
    if (key.empty() || key.size() > 256 || !printable) {
      Fail(item, "must be 1 to 256 printable ASCII characters without spaces");
    }
    // The key itself stays out of the message: it is a secret.
    if (!all_keys.insert(key).second) Fail(item, "repeats an API key listed earlier");
    keys.push_back(std::move(key));
  }
  return keys;
}

TenantConfig ParseTenant(const json::value& value, const std::string& path,
                         std::set<std::string>& names, std::set<std::string>& all_keys) {
  ObjectReader reader(value, path);
  TenantConfig tenant;
  const json::value& name = reader.Require("name");
  const std::string name_field = reader.FieldPath("name");
  if (!name.is_string()) Fail(name_field, "must be a string");
  tenant.name = std::string(name.as_string());
  if (tenant.name.empty() || tenant.name.size() > 63 ||
      !std::all_of(tenant.name.begin(), tenant.name.end(), IsNameCharacter)) {
    Fail(name_field, "must be 1 to 63 characters of A-Z, a-z, 0-9, '.', '_' and '-'");
  }
  if (!names.insert(tenant.name).second) Fail(name_field, "repeats tenant \"" + tenant.name + "\"");
  tenant.api_keys = ParseApiKeys(reader.Require("api_keys"), reader.FieldPath("api_keys"), all_keys);
  constexpr std::uint64_t kMaxLimit = 1ULL << 50;
  tenant.soft_limit = reader.Size("soft_limit", 0, 0, kMaxLimit);
  tenant.hard_limit = reader.Size("hard_limit", 0, 0, kMaxLimit);
  if (tenant.hard_limit != 0 && tenant.hard_limit < tenant.soft_limit) {
    Fail(reader.FieldPath("hard_limit"), "must be 0 (none) or at least soft_limit");
  }
  tenant.enforce_hard_limit = reader.Bool("enforce_hard_limit", false);
  tenant.dedicated_arena = reader.Bool("dedicated_arena", false);
  reader.Finish();
  return tenant;
}

// Resolves a host name or literal once, at start-up, to its first IPv4 or
// IPv6 address.
tcp::endpoint ResolveEndpoint(const std::string& host, std::uint16_t port,
                              const std::string& field) {
  boost::system::error_code error;
  auto literal = boost::asio::ip::make_address(host, error);
  if (!error) return tcp::endpoint(literal, port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int status = getaddrinfo(host.c_str(), nullptr, &hints, &result);
  if (status != 0 || result == nullptr) {
    Fail(field, "host \"" + host + "\" could not be resolved: " + gai_strerror(status));
  }
  tcp::endpoint endpoint;
  endpoint.resize(result->ai_addrlen);
  std::memcpy(endpoint.data(), result->ai_addr, result->ai_addrlen);
  freeaddrinfo(result);
  endpoint.port(port);
  return endpoint;
}

std::size_t AddEndpoint(const json::value& value, const std::string& field,
                        std::vector<EndpointConfig>& endpoints) {
  constexpr std::string_view kForm =
      "must be \"HOST:PORT\" or \"http://HOST:PORT\" with a port from 1 to 65535";
  if (!value.is_string()) Fail(field, kForm);
  std::string_view text = value.as_string();
  if (text.starts_with("https://")) Fail(field, "https is not supported; use http:// or HOST:PORT");
  if (text.starts_with("http://")) text.remove_prefix(7);
  if (text.ends_with("/")) text.remove_suffix(1);
  EndpointConfig endpoint;
  if (!SplitHostPort(text, endpoint.host, endpoint.port) || endpoint.port == 0) Fail(field, kForm);
  endpoint.label = std::string(text);
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    if (endpoints[i].label == endpoint.label) return i;
  }
  endpoint.address = ResolveEndpoint(endpoint.host, endpoint.port, field);
  endpoints.push_back(std::move(endpoint));
  return endpoints.size() - 1;
}

ModelConfig ParseModel(const json::value& value, const std::string& path,
                       std::set<std::string>& names, std::vector<EndpointConfig>& endpoints) {
  ObjectReader reader(value, path);
  ModelConfig model;
  const json::value& name = reader.Require("name");
  const std::string name_field = reader.FieldPath("name");
  if (!name.is_string() || name.as_string().empty() || name.as_string().size() > 256) {
    Fail(name_field, "must be a string of 1 to 256 characters");
  }
  model.name = std::string(name.as_string());
  if (!names.insert(model.name).second) Fail(name_field, "repeats model \"" + model.name + "\"");
  model.upstream_model = reader.String("upstream_model", model.name);
  if (model.upstream_model.empty()) Fail(reader.FieldPath("upstream_model"), "must not be empty");
  const json::value& upstreams = reader.Require("upstreams");
  const std::string upstreams_field = reader.FieldPath("upstreams");
  if (!upstreams.is_array() || upstreams.as_array().empty()) {
    Fail(upstreams_field, "must be a non-empty array of \"HOST:PORT\" strings");
  }
  const json::array& array = upstreams.as_array();
  for (std::size_t i = 0; i < array.size(); ++i) {
    std::size_t index =
        AddEndpoint(array[i], upstreams_field + "[" + std::to_string(i) + "]", endpoints);
    if (std::find(model.endpoints.begin(), model.endpoints.end(), index) == model.endpoints.end()) {
      model.endpoints.push_back(index);
    }
  }
  reader.Finish();
  return model;
}

void ParseUpstream(ObjectReader& reader, UpstreamSettings& upstream) {
  upstream.api_key = reader.String("api_key", upstream.api_key);
  upstream.max_idle_connections =
      std::size_t(reader.Integer("max_idle_connections", 16, 0, 4096));
  upstream.health_check_path = reader.String("health_check_path", upstream.health_check_path);
  if (!upstream.health_check_path.starts_with("/")) {
    Fail(reader.FieldPath("health_check_path"), "must be a path starting with '/'");
  }
  upstream.health_check_interval =
      reader.Millis("health_check_interval_ms", upstream.health_check_interval, 0);
  upstream.health_check_timeout =
      reader.Millis("health_check_timeout_ms", upstream.health_check_timeout, 1);
  upstream.unhealthy_after = int(reader.Integer("unhealthy_after", 2, 1, 1000));
  reader.Finish();
}

void ParseCache(ObjectReader& reader, CacheSettings& cache) {
  constexpr std::uint64_t kMaxCache = 1ULL << 40;
  cache.max_bytes = reader.Size("max_bytes", cache.max_bytes, 0, kMaxCache);
  cache.max_entry_bytes = reader.Size("max_entry_bytes", cache.max_entry_bytes, 1, kMaxCache);
  cache.ttl = reader.Millis("ttl_ms", cache.ttl, 1);
  reader.Finish();
}

void ParseHooks(ObjectReader& reader, HookSettings& hooks) {
  hooks.scopes = reader.Bool("scopes", true);
  hooks.request_memory_resource = reader.Bool("request_memory_resource", true);
  hooks.admission = reader.Bool("admission", true);
  hooks.cache_reclaimer = reader.Bool("cache_reclaimer", true);
  hooks.cache_unused_after = reader.Millis("cache_unused_after_ms", hooks.cache_unused_after, 0);
  hooks.idle_purge = reader.Bool("idle_purge", true);
  hooks.idle_purge_after = reader.Millis("idle_purge_after_ms", hooks.idle_purge_after, 1);
  reader.Finish();
}

// Calls `parse` with a reader of the optional object `key`; a missing object
// keeps every default.
template <typename Parse>
void ParseSection(ObjectReader& top, std::string_view key, Parse parse) {
  const json::value* value = top.Find(key);
  if (value == nullptr) return;
  ObjectReader reader(*value, top.FieldPath(key));
  parse(reader);
}

const json::array& RequireArray(ObjectReader& top, std::string_view key) {
  const json::value& value = top.Require(key);
  if (!value.is_array() || value.as_array().empty()) {
    Fail(top.FieldPath(key), "must be a non-empty array of objects");
  }
  return value.as_array();
}

}  // namespace

tcp::endpoint ParseListenAddress(std::string_view text, std::string_view field) {
  constexpr std::string_view kForm =
      "must be \"HOST:PORT\" with an IPv4 literal or a bracketed IPv6 literal and a port from 0 to "
      "65535, such as \"127.0.0.1:8080\"";
  std::string host;
  std::uint16_t port = 0;
  if (!SplitHostPort(text, host, port)) Fail(field, kForm);
  boost::system::error_code error;
  auto address = boost::asio::ip::make_address(host, error);
  if (error) Fail(field, kForm);
  return tcp::endpoint(address, port);
}

Config ParseConfig(std::string_view json_text) {
  boost::system::error_code error;
  json::value document = json::parse(json_text, error);
  if (error) throw ConfigError("the config is not valid JSON: " + error.message());

  Config config;
  ObjectReader top(document, "");
  const json::value* listen = top.Find("listen");
  if (listen != nullptr) {
    if (!listen->is_string()) Fail("listen", "must be a string \"HOST:PORT\"");
    config.listen = ParseListenAddress(listen->as_string(), "listen");
  }
  config.threads = int(top.Integer("threads", 1, 1, 64));
  config.access_log = top.String("access_log", config.access_log);
  ParseSection(top, "limits", [&](ObjectReader& reader) { ParseLimits(reader, config.limits); });

  std::set<std::string> tenant_names;
  std::set<std::string> api_keys;
  const json::array& tenants = RequireArray(top, "tenants");
  for (std::size_t i = 0; i < tenants.size(); ++i) {
    config.tenants.push_back(
        ParseTenant(tenants[i], "tenants[" + std::to_string(i) + "]", tenant_names, api_keys));
  }

  std::set<std::string> model_names;
  const json::array& models = RequireArray(top, "models");
  for (std::size_t i = 0; i < models.size(); ++i) {
    config.models.push_back(ParseModel(models[i], "models[" + std::to_string(i) + "]", model_names,
                                       config.endpoints));
  }

  ParseSection(top, "upstream", [&](ObjectReader& reader) { ParseUpstream(reader, config.upstream); });
  ParseSection(top, "cache", [&](ObjectReader& reader) { ParseCache(reader, config.cache); });
  ParseSection(top, "hooks", [&](ObjectReader& reader) { ParseHooks(reader, config.hooks); });
  top.Finish();
  return config;
}

Config LoadConfig(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw ConfigError("cannot read the config file " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << file.rdbuf();
  try {
    return ParseConfig(text.str());
  } catch (const ConfigError& error) {
    throw ConfigError(path + ": " + error.what());
  }
}

}  // namespace memward::gateway
