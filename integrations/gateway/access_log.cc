#include "access_log.h"

#include <boost/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace memward::gateway {
namespace {

// "2026-12-04T23:01:02.345Z", UTC with milliseconds.
std::string FormatNow() {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                int(millis.count()));
  return text;
}

}  // namespace

AccessLog::AccessLog(const std::string& target) {
  if (target.empty()) return;
  if (target == "-") {
    file_ = stdout;
    return;
  }
  file_ = std::fopen(target.c_str(), "a");
  if (file_ == nullptr) {
    throw std::runtime_error("cannot open the access log " + target + ": " + std::strerror(errno));
  }
  owns_file_ = true;
}

AccessLog::~AccessLog() {
  if (owns_file_) std::fclose(file_);
}

void AccessLog::Write(const AccessRecord& record) {
  if (file_ == nullptr) return;
  boost::json::object line;
  line["time"] = FormatNow();
  line["tenant"] = record.tenant;
  line["model"] = record.model;
  line["method"] = record.method;
  line["path"] = record.path;
  line["status"] = record.status;
  line["stream"] = record.stream;
  line["cache"] = record.cache;
  line["upstream"] = record.upstream;
  line["request_bytes"] = record.request_bytes;
  line["response_bytes"] = record.response_bytes;
  line["latency_us"] = std::int64_t(record.latency_ms * 1000);
  line["memward_request"] = record.memward_request;
  line["peak_bytes"] = record.peak_bytes;
  line["escaped_bytes"] = record.escaped_bytes;
  line["error"] = record.error;
  std::string text = boost::json::serialize(line);
  text.push_back('\n');
  std::lock_guard lock(mutex_);
  std::fwrite(text.data(), 1, text.size(), file_);
  // Flushed per line so that a tail -f or a test reads each request at once.
  std::fflush(file_);
}

}  // namespace memward::gateway
