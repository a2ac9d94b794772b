// Stack bounds from /proc/self/maps, kept per thread.
#include "accounting/stack_bounds.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "alloc/macros.h"

namespace memward::accounting {
namespace {

constinit thread_local StackBounds t_bounds;

// Parses the "start-end" of each line of /proc/self/maps, a character at a
// time, so that lines may span reads.
struct MapsParser {
  enum Field { kStart, kEnd, kRest };
  Field field = kStart;
  uintptr_t start = 0;
  uintptr_t end = 0;
  uintptr_t line_start = 0;
  uintptr_t line_end = 0;

  // Consumes one character; returns true at the end of a line whose range
  // contains `address`, leaving that range in `line_start` and `line_end`.
  bool Consume(char c, uintptr_t address) {
    if (c == '\n') {
      bool found = field != kStart && address >= start && address < end;
      line_start = start;
      line_end = end;
      field = kStart;
      start = 0;
      end = 0;
      return found;
    }
    if (field == kRest) return false;
    if (c == '-' && field == kStart) {
      field = kEnd;
      return false;
    }
    int digit = HexDigit(c);
    if (digit < 0) {
      field = kRest;
      return false;
    }
    uintptr_t& value = field == kStart ? start : end;
    value = value * 16 + static_cast<uintptr_t>(digit);
    return false;
  }

  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
};

MEMWARD_TEXT bool ReadMappingOf(uintptr_t address, StackBounds& bounds) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buffer[1024];
  MapsParser parser;
  bool found = false;
  ssize_t length;
  while (!found && (length = read(fd, buffer, sizeof(buffer))) > 0) {
    const char* cursor = buffer;
    const char* const end = buffer + length;
    while (cursor < end) {
      if (parser.field == MapsParser::kRest) {
        // The parser needs nothing more from this line than its end, which
        // memchr finds several times faster than a loop over each character.
        const void* newline = memchr(cursor, '\n', static_cast<size_t>(end - cursor));
        if (newline == nullptr) break;
        cursor = static_cast<const char*>(newline);
      }
      if (parser.Consume(*cursor++, address)) {
        bounds.low = parser.line_start;
        bounds.high = parser.line_end;
        found = true;
        break;
      }
    }
  }
  close(fd);
  return found;
}

}  // namespace

MEMWARD_TEXT bool FindStackBounds(uintptr_t stack_pointer, StackBounds& bounds) {
  StackBounds& cached = t_bounds;
  if (stack_pointer >= cached.low && stack_pointer < cached.high) {
    bounds = cached;
    return true;
  }
  if (!ReadMappingOf(stack_pointer, bounds)) return false;
  cached = bounds;
  return true;
}

}  // namespace memward::accounting
