// Reading the small text files of cgroups and /proc, with each file's
// problem reported once on stderr.
#ifndef MEMWARD_ACCOUNTING_CGROUP_FILES_H_
#define MEMWARD_ACCOUNTING_CGROUP_FILES_H_

#include <stdint.h>

#include <set>
#include <string>
#include <string_view>

namespace memward::accounting {

// The largest file read whole: mountinfo in a container with many mounts is
// the largest input, at about 150 bytes a mount.
inline constexpr size_t kMaxCgroupFileBytes = 1 << 20;

// Parses a byte count ("1048576", with an optional trailing newline). With
// `allow_max`, the word "max" (cgroup v2's "no limit") gives UINT64_MAX.
bool ParseByteCount(std::string_view text, bool allow_max, uint64_t* value);

// Finds the line "<key> <number>" in a flat-keyed file (memory.stat,
// memory.events, memory.oom_control) and parses the number.
bool FindKeyedValue(std::string_view text, std::string_view key, uint64_t* value);

// Finds "<key>: <number> kB" in the text of /proc/meminfo and returns the
// number in bytes.
bool FindMeminfoBytes(std::string_view text, std::string_view key, uint64_t* bytes);

// Reads files and reports problems. Only each path's first problem is
// logged (which file, what was wrong, what memward uses instead), so a
// broken file cannot flood stderr. Not thread-safe, because the cgroup
// monitor guards it with its mutex.
class CgroupFileReader {
 public:
  enum class Result { kOk, kMissing, kFailed };

  // Reads `path` whole into `*text`. A missing file is reported only when
  // `report_missing`; any other failure (a directory, a read error, a file
  // over kMaxCgroupFileBytes) always is. `fallback` completes the message.
  Result ReadText(const std::string& path, bool report_missing, const char* fallback,
                  std::string* text);

  // Reads a file that contains one byte count (or "max" with `allow_max`).
  Result ReadBytes(const std::string& path, bool allow_max, bool report_missing,
                   const char* fallback, uint64_t* value);

  // Reads the value of `key` from a flat-keyed file.
  Result ReadKey(const std::string& path, std::string_view key, bool report_missing,
                 const char* fallback, uint64_t* value);

  // Logs "<subject>: <problem>; <fallback>" unless `subject` was reported.
  void Report(const std::string& subject, const std::string& problem, const char* fallback);

  // The subjects reported so far, for tests and diagnostics.
  const std::set<std::string>& reported() const { return reported_; }

 private:
  std::set<std::string> reported_;
};

}  // namespace memward::accounting

#endif  // MEMWARD_ACCOUNTING_CGROUP_FILES_H_
