// The C API's heap profile and leak report functions (include/memward/memward.h).
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "accounting/profile_service.h"
#include "alloc/macros.h"
#include "memward/memward.h"

namespace {

using memward::accounting::HeapFormat;

// Writes `data` to a new file at `path` (mode 0600, replacing any file
// there). Returns false with errno set when the file cannot be written.
bool WriteWholeFile(const char* path, const std::string& data) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  size_t written = 0;
  while (written < data.size()) {
    ssize_t result = write(fd, data.data() + written, data.size() - written);
    if (result < 0 && errno == EINTR) continue;
    if (result <= 0) {
      int saved = errno;
      close(fd);
      errno = saved;
      return false;
    }
    written += static_cast<size_t>(result);
  }
  return close(fd) == 0;
}

}  // namespace

extern "C" {

MEMWARD_EXPORT int memward_heap_profile_write(const char* path, int format) {
  if (path == nullptr || path[0] == '\0') return MEMWARD_ERROR_INVALID;
  HeapFormat heap_format;
  switch (format) {
    case MEMWARD_PROFILE_PPROF: heap_format = HeapFormat::kPprof; break;
    case MEMWARD_PROFILE_FOLDED: heap_format = HeapFormat::kFolded; break;
    case MEMWARD_PROFILE_JSON: heap_format = HeapFormat::kJson; break;
    default: return MEMWARD_ERROR_INVALID;
  }
  std::string profile;
  std::string error;
  if (!memward::accounting::WriteHeapProfile(heap_format, &profile, &error)) {
    errno = ENOMEM;
    return MEMWARD_ERROR_IO;
  }
  return WriteWholeFile(path, profile) ? MEMWARD_OK : MEMWARD_ERROR_IO;
}

MEMWARD_EXPORT int memward_leak_window_close(void) {
  memward::accounting::CloseLeakWindowNow();
  return MEMWARD_OK;
}

MEMWARD_EXPORT int memward_leak_report_write(const char* path) {
  if (path == nullptr || path[0] == '\0') return MEMWARD_ERROR_INVALID;
  std::string report = memward::accounting::LeakReportJsonNow();
  return WriteWholeFile(path, report) ? MEMWARD_OK : MEMWARD_ERROR_IO;
}

}  // extern "C"
