// The gateway's configuration: the JSON file's fields after validation.
// integrations/gateway/README.md documents every field and its default.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace memward::gateway {

using Milliseconds = std::chrono::milliseconds;

// A config error: the message names the field (as a JSON path such as
// "tenants[1].api_keys[0]") and the accepted form.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Limits {
  std::uint64_t max_body_bytes = 1 << 20;
  std::uint64_t max_header_bytes = 16 << 10;
  std::uint64_t max_response_bytes = 16 << 20;
  Milliseconds client_idle_timeout{30000};
  Milliseconds client_read_timeout{10000};
  Milliseconds client_write_timeout{10000};
  Milliseconds upstream_connect_timeout{2000};
  Milliseconds upstream_header_timeout{60000};
  Milliseconds upstream_read_timeout{30000};
  Milliseconds shutdown_drain{30000};
  int retry_after_seconds = 1;
};

struct TenantConfig {
  std::string name;
  std::vector<std::string> api_keys;
  std::uint64_t soft_limit = 0;  // bytes, 0 for none
  std::uint64_t hard_limit = 0;  // bytes, 0 for none
  bool enforce_hard_limit = false;
  bool dedicated_arena = false;
};

// One upstream address, shared by every model that lists it.
struct EndpointConfig {
  std::string label;  // "host:port" as written, for logs and metrics
  std::string host;
  std::uint16_t port = 0;
  boost::asio::ip::tcp::endpoint address;  // resolved at start-up
};

struct ModelConfig {
  std::string name;
  std::string upstream_model;            // the "model" value sent upstream
  std::vector<std::size_t> endpoints;    // indexes into Config::endpoints
};

struct UpstreamSettings {
  std::string api_key;
  std::size_t max_idle_connections = 16;
  std::string health_check_path = "/v1/models";
  Milliseconds health_check_interval{5000};  // 0 turns active checks off
  Milliseconds health_check_timeout{1000};
  int unhealthy_after = 2;
};

struct CacheSettings {
  std::uint64_t max_bytes = 64 << 20;  // 0 turns the cache off
  std::uint64_t max_entry_bytes = 1 << 20;
  Milliseconds ttl{300000};
};

struct HookSettings {
  bool scopes = true;
  bool request_memory_resource = true;
  bool admission = true;
  bool cache_reclaimer = true;
  // With cache_reclaimer on, entries neither stored nor read for this long
  // are dropped and free pages are returned to the OS; 0 turns it off.
  Milliseconds cache_unused_after{5000};
  bool idle_purge = true;
  Milliseconds idle_purge_after{1000};
};

struct Config {
  boost::asio::ip::tcp::endpoint listen{boost::asio::ip::make_address_v4("127.0.0.1"), 8080};
  int threads = 1;
  std::string access_log = "-";  // a path, "-" for stdout, "" for none
  Limits limits;
  std::vector<TenantConfig> tenants;
  std::vector<ModelConfig> models;
  std::vector<EndpointConfig> endpoints;
  UpstreamSettings upstream;
  CacheSettings cache;
  HookSettings hooks;
};

// Parses and validates a config document and resolves upstream host names.
// Throws ConfigError on the first invalid field.
Config ParseConfig(std::string_view json_text);

// Reads the file and parses it. Throws ConfigError, naming the path when the
// file cannot be read.
Config LoadConfig(const std::string& path);

// Parses "HOST:PORT" with an IPv4 literal or a bracketed IPv6 literal.
// Throws ConfigError naming `field` when the text is invalid.
boost::asio::ip::tcp::endpoint ParseListenAddress(std::string_view text, std::string_view field);

}  // namespace memward::gateway
