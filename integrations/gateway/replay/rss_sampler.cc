#include "rss_sampler.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace memward::gateway::replay {

std::uint64_t ReadResidentBytes(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  std::FILE* file = std::fopen(path.c_str(), "r");
  if (file == nullptr) return 0;
  char line[256];
  std::uint64_t kilobytes = 0;
  while (std::fgets(line, sizeof(line), file) != nullptr) {
    if (std::strncmp(line, "VmRSS:", 6) == 0) {
      kilobytes = std::strtoull(line + 6, nullptr, 10);
      break;
    }
  }
  std::fclose(file);
  return kilobytes * 1024;
}

RssSampler::RssSampler(pid_t pid, std::chrono::milliseconds period)
    : pid_(pid), period_(period), thread_([this] { Run(); }) {}

RssSampler::~RssSampler() {
  if (thread_.joinable()) Finish();
}

void RssSampler::Run() {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  // Samples on ticks counted from the start, so a slow read does not shift
  // the later ones.
  for (std::int64_t tick = 0; !stop_.load(std::memory_order_relaxed); ++tick) {
    const Clock::time_point due = start + tick * period_;
    std::this_thread::sleep_until(due);
    std::uint64_t bytes = ReadResidentBytes(pid_);
    if (bytes == 0) break;
    double time_s = std::chrono::duration<double>(Clock::now() - start).count();
    std::lock_guard lock(mutex_);
    samples_.push_back({time_s, bytes});
  }
}

std::vector<RssSample> RssSampler::Finish() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  return samples_;
}

}  // namespace memward::gateway::replay
