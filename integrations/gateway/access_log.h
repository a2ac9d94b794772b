// The structured access log: one JSON object per line and request.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace memward::gateway {

struct AccessRecord {
  std::string_view tenant;
  std::string_view model;
  std::string_view method;
  std::string_view path;
  int status = 0;  // 0 when the client left before a response was sent
  bool stream = false;
  std::string_view cache = "off";  // hit, miss, fill or off
  std::string_view upstream;
  std::uint64_t request_bytes = 0;
  std::uint64_t response_bytes = 0;
  double latency_ms = 0;
  bool memward_request = false;
  std::uint64_t peak_bytes = 0;
  std::uint64_t escaped_bytes = 0;
  std::string_view error;
};

// Thread-safe: the mutex keeps lines from interleaving.
class AccessLog {
 public:
  // `target` is a path, "-" for stdout, or "" for no log. Throws
  // std::runtime_error when the file cannot be opened.
  explicit AccessLog(const std::string& target);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  void Write(const AccessRecord& record);

 private:
  std::mutex mutex_;
  std::FILE* file_ = nullptr;  // guarded by mutex_
  bool owns_file_ = false;
};

}  // namespace memward::gateway
