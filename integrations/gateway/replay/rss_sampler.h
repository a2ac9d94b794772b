// Samples a process's resident memory (VmRSS in /proc/PID/status) at a fixed
// period on a thread of its own, so a busy event loop does not delay it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace memward::gateway::replay {

struct RssSample {
  // Seconds since the sampler started.
  double time_s = 0;
  std::uint64_t rss_bytes = 0;
};

// Reads VmRSS of `pid` in bytes; returns 0 when the process is gone.
std::uint64_t ReadResidentBytes(pid_t pid);

class RssSampler {
 public:
  RssSampler(pid_t pid, std::chrono::milliseconds period);
  ~RssSampler();
  RssSampler(const RssSampler&) = delete;
  RssSampler& operator=(const RssSampler&) = delete;

  // Stops the thread and returns the samples, in time order. A process that
  // exited while sampled leaves no samples after its exit.
  std::vector<RssSample> Finish();

 private:
  void Run();

  const pid_t pid_;
  const std::chrono::milliseconds period_;
  std::atomic<bool> stop_{false};
  // Guards samples_ between Run() and Finish().
  std::mutex mutex_;
  std::vector<RssSample> samples_;
  std::thread thread_;
};

}  // namespace memward::gateway::replay
