// A logger for code that runs inside malloc: it formats into a fixed stack
// buffer with its own formatter and writes to stderr with write(2), so it never
// allocates, takes no lock and is safe in a forked child.
//
// Supported conversions: %s %c %d %u %ld %lu %lld %llu %zu %zd %x %lx %zx %p %%.
// Messages longer than kMaxLogMessage bytes are truncated.
#ifndef MEMWARD_BASE_LOG_H_
#define MEMWARD_BASE_LOG_H_

#include <stdarg.h>
#include <stddef.h>

#include <atomic>

namespace memward::base {

inline constexpr size_t kMaxLogMessage = 1024;

// Formats into `buffer` (always NUL-terminated when `capacity` > 0) and returns
// the number of characters written, excluding the NUL.
size_t FormatV(char* buffer, size_t capacity, const char* format, va_list args);
size_t Format(char* buffer, size_t capacity, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

// Writes "memward: <message>\n" to stderr.
void Log(const char* format, ...) __attribute__((format(printf, 1, 2)));

// Replaces the sink that Log and Fatal write to; tests use it to capture
// messages. Passing nullptr restores stderr.
using LogSink = void (*)(const char* message, size_t length);
void SetLogSink(LogSink sink);

// Writes "memward: fatal: <message>" and aborts. Used for detected corruption
// and for `strict=true` configuration errors.
[[noreturn]] void Fatal(const char* format, ...) __attribute__((format(printf, 1, 2)));

// A call site's rate limit: the first `limit` calls pass and the rest are
// counted, so a repeated error cannot flood the host's stderr.
class LogLimit {
 public:
  explicit constexpr LogLimit(int limit) : remaining_(limit) {}
  bool Allow() { return remaining_.fetch_sub(1, std::memory_order_relaxed) > 0; }

 private:
  std::atomic<int> remaining_;
};

}  // namespace memward::base

#endif  // MEMWARD_BASE_LOG_H_
