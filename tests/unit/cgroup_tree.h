// Prepared cgroup trees for the cgroup monitor's tests: a temporary
// directory that stands for the file-system root, with proc/self/cgroup,
// proc/self/mountinfo, proc/meminfo and the cgroup files written by the test,
// and a log sink that captures memward's messages.
#ifndef MEMWARD_TESTS_UNIT_CGROUP_TREE_H_
#define MEMWARD_TESTS_UNIT_CGROUP_TREE_H_

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "base/log.h"

namespace memward::testing {

class CgroupTree {
 public:
  CgroupTree() {
    char pattern[] = "/tmp/memward_cgroup_XXXXXX";
    const char* made = mkdtemp(pattern);
    root_ = made != nullptr ? made : "";
  }
  ~CgroupTree() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  CgroupTree(const CgroupTree&) = delete;
  CgroupTree& operator=(const CgroupTree&) = delete;

  const std::string& root() const { return root_; }
  std::string Path(const std::string& relative) const { return root_ + "/" + relative; }

  // Writes `contents` to root/`relative`, creating the directories above it.
  void Write(const std::string& relative, const std::string& contents) const {
    std::filesystem::path path = Path(relative);
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::trunc) << contents;
  }

  void MakeDirectory(const std::string& relative) const {
    std::filesystem::create_directories(Path(relative));
  }

  void Remove(const std::string& relative) const {
    std::error_code ignored;
    std::filesystem::remove_all(Path(relative), ignored);
  }

  // Writes proc/meminfo with MemTotal in kB, as the kernel does.
  void WriteMemTotal(uint64_t bytes) const {
    Write("proc/meminfo", "MemTotal:       " + std::to_string(bytes / 1024) +
                              " kB\nMemFree:         1000 kB\n");
  }

 private:
  std::string root_;
};

// Captures memward's log messages while it is alive.
class LogCapture {
 public:
  LogCapture() {
    std::lock_guard<std::mutex> lock(Mutex());
    Messages().clear();
    base::SetLogSink(Append);
  }
  ~LogCapture() { base::SetLogSink(nullptr); }

  std::vector<std::string> messages() const {
    std::lock_guard<std::mutex> lock(Mutex());
    return Messages();
  }

  // Returns how many messages contain every one of `parts`.
  int Count(std::initializer_list<std::string> parts) const {
    int count = 0;
    for (const std::string& message : messages()) {
      bool all = true;
      for (const std::string& part : parts) all = all && message.find(part) != std::string::npos;
      count += all ? 1 : 0;
    }
    return count;
  }

 private:
  static std::mutex& Mutex() {
    static std::mutex mutex;
    return mutex;
  }
  static std::vector<std::string>& Messages() {
    static std::vector<std::string> messages;
    return messages;
  }
  static void Append(const char* message, size_t length) {
    std::lock_guard<std::mutex> lock(Mutex());
    Messages().emplace_back(message, length);
  }
};

}  // namespace memward::testing

#endif  // MEMWARD_TESTS_UNIT_CGROUP_TREE_H_
