#include "harness/procfs.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness/process.h"

#ifndef MEMWARD_PRELOAD_PATH
#error "MEMWARD_PRELOAD_PATH must name libmemward_preload.so"
#endif

namespace memward::integration {

std::string preload_path() {
  const char* override_path = getenv("MEMWARD_PRELOAD_OVERRIDE");
  if (override_path != nullptr && *override_path != '\0') return override_path;
  return MEMWARD_PRELOAD_PATH;
}

std::string preload_library_name() {
  std::error_code ignored;
  return std::filesystem::weakly_canonical(preload_path(), ignored).filename().string();
}

std::vector<std::string> mapped_paths(pid_t pid, std::string_view library_name) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::vector<std::string> found;
  std::string line;
  while (std::getline(maps, line)) {
    // The fields are address, perms, offset, dev, inode and pathname, and
    // only the pathname contains a '/'.
    std::size_t slash = line.find('/');
    if (slash == std::string::npos) continue;
    std::string path = line.substr(slash);
    if (std::filesystem::path(path).filename() != library_name) continue;
    if (found.empty() || found.back() != path) found.push_back(path);
  }
  return found;
}

bool wait_for_library(Process& process, std::string_view library_name,
                      std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!mapped_paths(process.pid(), library_name).empty()) return true;
    if (!process.running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

std::vector<pid_t> child_pids(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat_file(entry.path() / "stat");
    std::string stat;
    if (!std::getline(stat_file, stat)) continue;
    // The command name in brackets may contain spaces, so the fields are
    // counted from the last ')'. The state comes first, then the parent pid.
    std::size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 1));
    char state = 0;
    pid_t ppid = 0;
    if (fields >> state >> ppid && ppid == parent) children.push_back(std::stoi(name));
  }
  return children;
}

}  // namespace memward::integration
