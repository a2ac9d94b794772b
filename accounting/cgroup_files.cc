#include "accounting/cgroup_files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

namespace memward::accounting {
namespace {

// The maximum number of subjects remembered for the report-once rule. Problems with
// further subjects are not logged at all, which bounds memory and output.
constexpr size_t kMaxReportedSubjects = 256;

std::string_view TrimSpace(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// Shortens file contents for an error message.
std::string Excerpt(std::string_view text) {
  text = TrimSpace(text);
  std::string excerpt(text.substr(0, 40));
  for (char& c : excerpt) {
    if (c == '\n' || static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  if (text.size() > 40) excerpt += "...";
  return "\"" + excerpt + "\"";
}

std::string ErrnoText(int error) {
  char buffer[128];
  return strerror_r(error, buffer, sizeof(buffer));
}

}  // namespace

bool ParseByteCount(std::string_view text, bool allow_max, uint64_t* value) {
  text = TrimSpace(text);
  if (allow_max && text == "max") {
    *value = UINT64_MAX;
    return true;
  }
  if (text.empty() || text.size() > 20) return false;
  uint64_t result = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (result > (UINT64_MAX - digit) / 10) return false;
    result = result * 10 + digit;
  }
  *value = result;
  return true;
}

bool FindKeyedValue(std::string_view text, std::string_view key, uint64_t* value) {
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      return ParseByteCount(line.substr(key.size() + 1), false, value);
    }
  }
  return false;
}

bool FindMeminfoBytes(std::string_view text, std::string_view key, uint64_t* bytes) {
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    if (line.size() <= key.size() || line.substr(0, key.size()) != key ||
        line[key.size()] != ':') {
      continue;
    }
    std::string_view value = TrimSpace(line.substr(key.size() + 1));
    if (value.size() < 3 || value.substr(value.size() - 3) != " kB") return false;
    uint64_t kib = 0;
    if (!ParseByteCount(value.substr(0, value.size() - 3), false, &kib) || kib > UINT64_MAX / 1024) {
      return false;
    }
    *bytes = kib * 1024;
    return true;
  }
  return false;
}

CgroupFileReader::Result CgroupFileReader::ReadText(const std::string& path, bool report_missing,
                                                    const char* fallback, std::string* text) {
  text->clear();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      if (report_missing) Report(path, "missing", fallback);
      return Result::kMissing;
    }
    Report(path, "cannot open: " + ErrnoText(error), fallback);
    return Result::kFailed;
  }

  char buffer[4096];
  Result result = Result::kOk;
  while (true) {
    ssize_t got = read(fd, buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      // A directory where a file is expected fails here with EISDIR.
      Report(path, "cannot read: " + ErrnoText(errno), fallback);
      result = Result::kFailed;
      break;
    }
    if (got == 0) break;
    if (text->size() + static_cast<size_t>(got) > kMaxCgroupFileBytes) {
      Report(path, "larger than " + std::to_string(kMaxCgroupFileBytes) + " bytes", fallback);
      result = Result::kFailed;
      break;
    }
    text->append(buffer, static_cast<size_t>(got));
  }
  close(fd);
  if (result != Result::kOk) text->clear();
  return result;
}

CgroupFileReader::Result CgroupFileReader::ReadBytes(const std::string& path, bool allow_max,
                                                     bool report_missing, const char* fallback,
                                                     uint64_t* value) {
  std::string text;
  Result result = ReadText(path, report_missing, fallback, &text);
  if (result != Result::kOk) return result;
  if (!ParseByteCount(text, allow_max, value)) {
    Report(path,
           "invalid content " + Excerpt(text) +
               (allow_max ? ", expected a byte count or \"max\"" : ", expected a byte count"),
           fallback);
    return Result::kFailed;
  }
  return Result::kOk;
}

CgroupFileReader::Result CgroupFileReader::ReadKey(const std::string& path, std::string_view key,
                                                   bool report_missing, const char* fallback,
                                                   uint64_t* value) {
  std::string text;
  Result result = ReadText(path, report_missing, fallback, &text);
  if (result != Result::kOk) return result;
  if (!FindKeyedValue(text, key, value)) {
    Report(path, "no valid \"" + std::string(key) + " <number>\" line", fallback);
    return Result::kFailed;
  }
  return Result::kOk;
}

void CgroupFileReader::Report(const std::string& subject, const std::string& problem,
                              const char* fallback) {
  if (reported_.count(subject) != 0 || reported_.size() >= kMaxReportedSubjects) return;
  reported_.insert(subject);
  base::Log("cgroup monitor: %s: %s; %s", subject.c_str(), problem.c_str(), fallback);
}

}  // namespace memward::accounting
