// The non-allocating formatter and stderr writer behind Log and Fatal.
#include "base/log.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

namespace memward::base {
namespace {

std::atomic<LogSink> g_sink{nullptr};

// An output cursor that drops what does not fit and keeps room for the NUL.
struct Output {
  char* buffer;
  size_t capacity;
  size_t length = 0;

  void Put(char c) {
    if (length + 1 < capacity) buffer[length] = c;
    length++;
  }
  void PutString(const char* text) {
    if (text == nullptr) text = "(null)";
    while (*text != '\0') Put(*text++);
  }
  void PutUnsigned(unsigned long long value, unsigned base) {
    char digits[24];
    int count = 0;
    do {
      digits[count++] = "0123456789abcdef"[value % base];
      value /= base;
    } while (value != 0);
    while (count > 0) Put(digits[--count]);
  }
  void PutSigned(long long value) {
    if (value < 0) {
      Put('-');
      // Negating through unsigned keeps LLONG_MIN defined.
      PutUnsigned(0ULL - static_cast<unsigned long long>(value), 10);
    } else {
      PutUnsigned(static_cast<unsigned long long>(value), 10);
    }
  }
};

// Length modifiers that the formatter understands.
enum class Width { kInt, kLong, kLongLong, kSize };

Width ReadWidth(const char*& format) {
  if (*format == 'z') {
    format++;
    return Width::kSize;
  }
  if (*format == 'l') {
    format++;
    if (*format == 'l') {
      format++;
      return Width::kLongLong;
    }
    return Width::kLong;
  }
  return Width::kInt;
}

unsigned long long ReadUnsigned(Width width, va_list& args) {
  switch (width) {
    case Width::kLong: return va_arg(args, unsigned long);
    case Width::kLongLong: return va_arg(args, unsigned long long);
    case Width::kSize: return va_arg(args, size_t);
    case Width::kInt: break;
  }
  return va_arg(args, unsigned);
}

long long ReadSigned(Width width, va_list& args) {
  switch (width) {
    case Width::kLong: return va_arg(args, long);
    case Width::kLongLong: return va_arg(args, long long);
    case Width::kSize: return va_arg(args, ssize_t);
    case Width::kInt: break;
  }
  return va_arg(args, int);
}

void WriteAll(const char* message, size_t length) {
  LogSink sink = g_sink.load(std::memory_order_acquire);
  if (sink != nullptr) {
    sink(message, length);
    return;
  }
  int saved_errno = errno;
  while (length > 0) {
    ssize_t written = write(STDERR_FILENO, message, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) break;
    message += written;
    length -= static_cast<size_t>(written);
  }
  errno = saved_errno;
}

size_t FormatLine(char* buffer, const char* prefix, const char* format, va_list args) {
  size_t length = Format(buffer, kMaxLogMessage, "%s", prefix);
  length += FormatV(buffer + length, kMaxLogMessage - length - 1, format, args);
  if (length > kMaxLogMessage - 2) length = kMaxLogMessage - 2;
  buffer[length++] = '\n';
  buffer[length] = '\0';
  return length;
}

}  // namespace

size_t FormatV(char* buffer, size_t capacity, const char* format, va_list args) {
  Output out{buffer, capacity};
  va_list cursor;
  va_copy(cursor, args);
  while (*format != '\0') {
    if (*format != '%') {
      out.Put(*format++);
      continue;
    }
    format++;
    Width width = ReadWidth(format);
    char conversion = *format;
    if (conversion == '\0') break;
    format++;
    switch (conversion) {
      case 's': out.PutString(va_arg(cursor, const char*)); break;
      case 'c': out.Put(static_cast<char>(va_arg(cursor, int))); break;
      case 'd': out.PutSigned(ReadSigned(width, cursor)); break;
      case 'u': out.PutUnsigned(ReadUnsigned(width, cursor), 10); break;
      case 'x': out.PutUnsigned(ReadUnsigned(width, cursor), 16); break;
      case 'p':
        out.PutString("0x");
        out.PutUnsigned(reinterpret_cast<uintptr_t>(va_arg(cursor, void*)), 16);
        break;
      case '%': out.Put('%'); break;
      default:
        out.Put('%');
        out.Put(conversion);
        break;
    }
  }
  va_end(cursor);
  if (capacity > 0) buffer[out.length < capacity ? out.length : capacity - 1] = '\0';
  return out.length < capacity ? out.length : (capacity > 0 ? capacity - 1 : 0);
}

size_t Format(char* buffer, size_t capacity, const char* format, ...) {
  va_list args;
  va_start(args, format);
  size_t length = FormatV(buffer, capacity, format, args);
  va_end(args);
  return length;
}

void SetLogSink(LogSink sink) { g_sink.store(sink, std::memory_order_release); }

void Log(const char* format, ...) {
  char buffer[kMaxLogMessage];
  va_list args;
  va_start(args, format);
  size_t length = FormatLine(buffer, "memward: ", format, args);
  va_end(args);
  WriteAll(buffer, length);
}

void Fatal(const char* format, ...) {
  char buffer[kMaxLogMessage];
  va_list args;
  va_start(args, format);
  size_t length = FormatLine(buffer, "memward: fatal: ", format, args);
  va_end(args);
  WriteAll(buffer, length);
  abort();
}

}  // namespace memward::base
