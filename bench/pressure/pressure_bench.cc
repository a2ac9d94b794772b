// Pressure benchmark: a program in a memory cgroup of its own grows a cache
// at a steady rate, and memward's warden shrinks it through a reclaimer.
// It measures
//   - the time from each crossing of the soft threshold (80 % of the limit,
//     seen by polling the cgroup's usage file after every block) to the
//     first reclaimer call after it. In `cycles` mode the program then frees
//     its whole cache itself and waits for the normal level, so that each
//     cycle gives one sample; and
//   - the overshoot: the cgroup's peak usage (memory.max_usage_in_bytes on
//     v1, memory.peak on v2) above the soft threshold and above the limit.
//     In `steady` mode the cache only grows, and memward keeps it near the
//     soft level's goal (75 %) for the whole run; and
//   - the CPU time of the warden thread (user and system, from
//     /proc/self/task/<tid>/stat, in clock ticks of 10 ms) over the run.
//
// Usage: pressure_bench cycles|steady LIMIT_MIB RATE_MIB_PER_S SECONDS
// MEMWARD_CONF selects the wake-up sources (pressure_interval,
// pressure_wake_bytes). The program needs root: it creates a child of its
// own memory cgroup, moves itself in, and removes the child at exit.
// Output: one JSON object on stdout.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memward/memward.hpp"

namespace {

constexpr size_t kBlockBytes = 256 * 1024;
constexpr uint64_t kMiB = 1 << 20;

int64_t NowNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

std::string ReadFile(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

bool WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// The process's memory cgroup directory and whether it is cgroup v2.
bool FindMemoryCgroup(std::string* dir, bool* v2) {
  std::ifstream cgroups("/proc/self/cgroup");
  std::string line;
  std::string unified;
  while (std::getline(cgroups, line)) {
    const size_t first = line.find(':');
    const size_t second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (("," + controllers + ",").find(",memory,") != std::string::npos) {
      *dir = "/sys/fs/cgroup/memory" + path;
      *v2 = false;
      return true;
    }
    if (controllers.empty()) unified = path;
  }
  *dir = "/sys/fs/cgroup" + unified;
  *v2 = true;
  return access((*dir + "/memory.max").c_str(), F_OK) == 0;
}

// Reads a number from an open usage file with pread, so polling costs one
// system call.
uint64_t ReadNumber(int fd) {
  char buffer[32];
  const ssize_t length = pread(fd, buffer, sizeof(buffer) - 1, 0);
  if (length <= 0) return 0;
  buffer[length] = '\0';
  return strtoull(buffer, nullptr, 10);
}

// The cache: blocks the program holds, freed oldest first by the reclaimer.
class BlockCache : public memward::Reclaimer {
 public:
  ~BlockCache() override {
    Unregister();
    for (size_t i = first_; i < blocks_.size(); i++) free(blocks_[i]);
  }

  // Frees every block the program holds, as a program would drop its cache.
  void Clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = first_; i < blocks_.size(); i++) free(blocks_[i]);
    blocks_.clear();
    first_ = 0;
  }

  void Add(void* block) {
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.push_back(block);
  }

  uint64_t ReclaimableBytes() override {
    std::lock_guard<std::mutex> lock(mutex_);
    return (blocks_.size() - first_) * kBlockBytes;
  }

  uint64_t Reclaim(uint64_t target_bytes) override {
    last_call_ns.store(NowNs());
    calls.fetch_add(1);
    std::lock_guard<std::mutex> lock(mutex_);
    uint64_t freed = 0;
    while (freed < target_bytes && first_ < blocks_.size()) {
      free(blocks_[first_++]);
      freed += kBlockBytes;
    }
    return freed;
  }

  std::atomic<int64_t> last_call_ns{0};
  std::atomic<uint64_t> calls{0};

 private:
  std::mutex mutex_;
  std::vector<void*> blocks_;
  size_t first_ = 0;  // blocks before it are freed
};

// Returns the user and system CPU time of the thread named memward-warden in
// milliseconds, or -1 when there is none.
double WardenCpuMs() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return -1;
  double cpu_ms = -1;
  while (dirent* entry = readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    const std::string dir = std::string("/proc/self/task/") + entry->d_name;
    if (ReadFile(dir + "/comm") != "memward-warden\n") continue;
    // Fields 14 and 15 (utime, stime) follow the name in parentheses.
    const std::string stat = ReadFile(dir + "/stat");
    const size_t name_end = stat.rfind(')');
    if (name_end == std::string::npos) continue;
    std::istringstream fields(stat.substr(name_end + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int index = 3; index <= 15 && fields >> field; index++) {
      if (index == 14) utime = std::stoull(field);
      if (index == 15) stime = std::stoull(field);
    }
    cpu_ms = static_cast<double>(utime + stime) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
  closedir(tasks);
  return cpu_ms;
}

double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return -1;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(fraction * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: pressure_bench cycles|steady LIMIT_MIB RATE_MIB_PER_S SECONDS\n");
    return 2;
  }
  const std::string mode = argv[1];
  const uint64_t limit = strtoull(argv[2], nullptr, 10) * kMiB;
  const double rate = strtod(argv[3], nullptr);
  const double seconds = strtod(argv[4], nullptr);
  if ((mode != "cycles" && mode != "steady") || limit == 0 || rate <= 0 || seconds <= 0) {
    fprintf(stderr, "pressure_bench: invalid arguments\n");
    return 2;
  }
  if (!memward::IsLoaded()) {
    fprintf(stderr, "pressure_bench: memward is not loaded\n");
    return 3;
  }

  std::string parent;
  bool v2 = false;
  if (!FindMemoryCgroup(&parent, &v2)) {
    fprintf(stderr, "pressure_bench: no memory cgroup found\n");
    return 4;
  }
  const std::string dir = parent + "/memward-pressure-bench-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0) {
    fprintf(stderr, "pressure_bench: cannot create %s: %s (needs root)\n", dir.c_str(),
            strerror(errno));
    return 4;
  }
  const std::string limit_file = dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes");
  const std::string pid = std::to_string(getpid());
  if (!WriteFile(limit_file, std::to_string(limit)) || !WriteFile(dir + "/cgroup.procs", pid)) {
    fprintf(stderr, "pressure_bench: cannot set up %s: %s\n", dir.c_str(), strerror(errno));
    rmdir(dir.c_str());
    return 4;
  }
  const int usage_fd =
      open((dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes")).c_str(), O_RDONLY);

  // The tenant scope makes the allocations visible to the allocator's
  // wake-up through tenant batches.
  auto tenant = memward::Tenant::Register("bench-cache");
  BlockCache cache;
  {
    memward::TenantScope scope(*tenant);
    cache.Register("bench-cache", 0, 5000);
    memward::CurrentPressure();  // starts the warden, which reads the new cgroup
    const double warden_cpu_start_ms = WardenCpuMs();

    const uint64_t soft = limit / 100 * 80;
    const uint64_t rearm = limit / 100 * 75;
    std::vector<double> latencies_ms;
    // Below the threshold (kArmed), crossed and waiting for the reclaimer
    // (kCrossed), or reclaimed and waiting for usage to fall under the goal
    // before the next crossing counts (kDisarmed).
    enum { kArmed, kCrossed, kDisarmed } state = kArmed;
    int64_t crossing_ns = 0;
    int64_t paused_ns = 0;  // time spent waiting for the normal level, not growing
    std::mt19937_64 generator(static_cast<uint64_t>(NowNs()));
    std::uniform_real_distribution<double> random_pause(0, 300e6);  // nanoseconds
    const int64_t start = NowNs();
    const double ns_per_block = static_cast<double>(kBlockBytes) / (rate * kMiB) * 1e9;
    for (uint64_t block = 0; NowNs() - start < static_cast<int64_t>(seconds * 1e9); block++) {
      void* memory = malloc(kBlockBytes);
      memset(memory, 1, kBlockBytes);
      cache.Add(memory);
      const uint64_t usage = ReadNumber(usage_fd);
      const int64_t now = NowNs();
      if (state == kArmed && usage >= soft) {
        state = kCrossed;
        crossing_ns = now;
      }
      const int64_t last_call = cache.last_call_ns.load();
      if (state == kCrossed && last_call >= crossing_ns) {
        latencies_ms.push_back(static_cast<double>(last_call - crossing_ns) / 1e6);
        state = kDisarmed;
      }
      if (state == kDisarmed && mode == "cycles") {
        cache.Clear();
        memward::Purge();
        while (memward::CurrentPressure() != memward::PressureLevel::kNormal &&
               NowNs() - start < static_cast<int64_t>(seconds * 1e9)) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        // A random pause, so that the next crossing does not fall at the
        // same phase of the warden's timer as this one.
        const int64_t pause_end = NowNs() + static_cast<int64_t>(random_pause(generator));
        while (NowNs() < pause_end) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        paused_ns += NowNs() - now;
        if (getenv("PRESSURE_BENCH_TRACE") != nullptr) {
          fprintf(stderr, "cycle at %.3f s: waited %.1f ms for the normal level\n",
                  (now - start) / 1e9, (NowNs() - now) / 1e6);
        }
        state = kArmed;
      }
      if (state == kDisarmed && usage < rearm) state = kArmed;
      const int64_t due = start + paused_ns + static_cast<int64_t>(ns_per_block * (block + 1));
      while (NowNs() < due) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const uint64_t peak = strtoull(
        ReadFile(dir + (v2 ? "/memory.peak" : "/memory.max_usage_in_bytes")).c_str(), nullptr, 10);
    const uint64_t limit_hits =
        v2 ? 0 : strtoull(ReadFile(dir + "/memory.failcnt").c_str(), nullptr, 10);
    const double run_seconds = static_cast<double>(NowNs() - start) / 1e9;
    const double warden_cpu_ms = WardenCpuMs() - warden_cpu_start_ms;
    printf("{\"mode\": \"%s\", \"limit_mib\": %llu, \"rate_mib_per_s\": %.0f, \"seconds\": %.1f, "
           "\"crossings\": %zu, \"latency_ms_p50\": %.1f, \"latency_ms_p99\": %.1f, "
           "\"latency_ms_max\": %.1f, \"reclaim_calls\": %llu, \"peak_mib\": %.1f, "
           "\"overshoot_over_soft_mib\": %.1f, \"overshoot_over_limit_mib\": %.1f, "
           "\"limit_hits\": %llu, \"warden_cpu_percent\": %.2f}\n",
           mode.c_str(), static_cast<unsigned long long>(limit / kMiB), rate, seconds,
           latencies_ms.size(),
           Percentile(latencies_ms, 0.5), Percentile(latencies_ms, 0.99),
           Percentile(latencies_ms, 1.0), static_cast<unsigned long long>(cache.calls.load()),
           static_cast<double>(peak) / kMiB,
           peak > soft ? static_cast<double>(peak - soft) / kMiB : 0.0,
           peak > limit ? static_cast<double>(peak - limit) / kMiB : 0.0,
           static_cast<unsigned long long>(limit_hits),
           warden_cpu_ms / 10.0 / run_seconds);
  }

  // Leave the cgroup before removing it; the parent takes the charges.
  cache.Unregister();
  close(usage_fd);
  WriteFile(parent + "/cgroup.procs", pid);
  for (int attempt = 0; attempt < 100 && rmdir(dir.c_str()) != 0; attempt++) usleep(20000);
  return 0;
}
