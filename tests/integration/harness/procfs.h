// Reading /proc to check what a running program has loaded and forked.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace memward::integration {

class Process;

// Path of the library under test, from MEMWARD_PRELOAD_PATH at build time.
// MEMWARD_PRELOAD_OVERRIDE in the environment replaces it, to run the same
// tests against another allocator.
std::string preload_path();

// File name of preload_path() after resolving symbolic links, as it shows in
// /proc/<pid>/maps.
std::string preload_library_name();

// Paths of the files mapped into `pid` whose file name is `library_name`.
// The result is empty when none is mapped or the process is gone.
std::vector<std::string> mapped_paths(pid_t pid, std::string_view library_name);

// Polls /proc/<pid>/maps until `library_name` is mapped or the process exits
// or `timeout` passes. Right after fork the child still maps the test binary,
// and the dynamic loader maps LD_PRELOAD libraries shortly after exec.
bool wait_for_library(Process& process, std::string_view library_name,
                      std::chrono::milliseconds timeout);

// Processes whose parent is `parent`, from /proc/*/stat.
std::vector<pid_t> child_pids(pid_t parent);

}  // namespace memward::integration
