// The admin server's cost to its host, linked against libmemward.so:
//   1. the latency of GET /stats and GET /metrics while host threads
//      allocate at full speed (p50, p99, max over --requests requests each).
//      It also prints the warden thread's CPU time per request, from the
//      first field of /proc/self/task/TID/schedstat (nanoseconds on the
//      CPU), which a busy machine disturbs less than wall time;
//   2. the host's allocation throughput with and without a scrape of
//      /metrics and /stats once a second, in alternating rounds of
//      --round-seconds each, so drift in the machine's load hits both.
//
//   admin_scrape [--threads N] [--requests N] [--rounds N] [--round-seconds S]
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "memward/memward.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int threads = 2;
  int requests = 2000;
  int rounds = 6;
  double round_seconds = 5;
};

// Sends one GET and reads the reply to the end. Returns the status or 0.
int Get(const std::string& path, const char* target) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return 0;
  }
  std::string request = std::string("GET ") + target + " HTTP/1.1\r\nHost: bench\r\n\r\n";
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  char buffer[16384];
  std::string head;
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) {
    if (head.size() < 12) head.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return head.size() >= 12 ? atoi(head.c_str() + 9) : 0;
}

// Returns the CPU time of the thread named memward-warden, in nanoseconds,
// or -1 when there is none.
int64_t WardenCpuNs() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return -1;
  int64_t result = -1;
  while (dirent* entry = readdir(tasks)) {
    std::string base = std::string("/proc/self/task/") + entry->d_name;
    std::ifstream comm(base + "/comm");
    std::string name;
    if (!std::getline(comm, name) || name != "memward-warden") continue;
    std::ifstream schedstat(base + "/schedstat");
    schedstat >> result;
    break;
  }
  closedir(tasks);
  return result;
}

// Host threads: malloc and free blocks of 16 to 4,096 bytes, 64 at a time.
class Host {
 public:
  explicit Host(int threads) {
    for (int t = 0; t < threads; t++) {
      threads_.emplace_back([this, t] {
        uint32_t seed = 12345 + t;
        void* blocks[64];
        while (!stop_.load(std::memory_order_relaxed)) {
          for (void*& block : blocks) {
            seed = seed * 1664525 + 1013904223;
            block = malloc(16 + (seed >> 20) % 4080);
            *static_cast<volatile char*>(block) = 1;
          }
          for (void* block : blocks) free(block);
          operations_.fetch_add(64, std::memory_order_relaxed);
        }
      });
    }
  }
  ~Host() {
    stop_ = true;
    for (std::thread& thread : threads_) thread.join();
  }
  uint64_t operations() const { return operations_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> operations_{0};
  std::vector<std::thread> threads_;
};

void MeasureLatency(const std::string& path, const Options& options) {
  Host host(options.threads);
  for (const char* target : {"/stats", "/metrics"}) {
    std::vector<double> micros;
    int failures = 0;
    const int64_t cpu_before = WardenCpuNs();
    for (int i = 0; i < options.requests; i++) {
      auto start = Clock::now();
      int status = Get(path, target);
      micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      failures += status != 200;
    }
    const int64_t cpu_after = WardenCpuNs();
    std::sort(micros.begin(), micros.end());
    auto at = [&](double q) { return micros[static_cast<size_t>(q * (micros.size() - 1))]; };
    printf("latency GET %-8s n=%d p50=%.0f us p99=%.0f us max=%.0f us failures=%d "
           "warden CPU %.1f us/request\n",
           target, options.requests, at(0.5), at(0.99), micros.back(), failures,
           (cpu_after - cpu_before) / 1000.0 / options.requests);
  }
}

// Returns the host's operations per second over one round, scraping once a
// second when `scrape` is set.
double Round(const std::string& path, const Options& options, bool scrape) {
  Host host(options.threads);
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(options.round_seconds);
  uint64_t first = host.operations();
  auto next_scrape = start;
  while (Clock::now() < end) {
    if (scrape && Clock::now() >= next_scrape) {
      Get(path, "/metrics");
      Get(path, "/stats");
      next_scrape += std::chrono::seconds(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return (host.operations() - first) / seconds;
}

void MeasureThroughputCost(const std::string& path, const Options& options) {
  double quiet = 0, scraped = 0;
  for (int round = 0; round < options.rounds; round++) {
    // ABBA order within each pair of rounds, so a trend in the machine's
    // load does not favour one side.
    bool scrape_first = round % 2 == 1;
    double a = Round(path, options, scrape_first);
    double b = Round(path, options, !scrape_first);
    (scrape_first ? scraped : quiet) += a;
    (scrape_first ? quiet : scraped) += b;
    printf("round %d: quiet %.3g ops/s, scraped %.3g ops/s\n", round,
           scrape_first ? b : a, scrape_first ? a : b);
  }
  printf("throughput: quiet %.4g ops/s, scraped once a second %.4g ops/s, cost %.2f%%\n",
         quiet / options.rounds, scraped / options.rounds, 100.0 * (1 - scraped / quiet));
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--threads") options.threads = atoi(argv[i + 1]);
    else if (flag == "--requests") options.requests = atoi(argv[i + 1]);
    else if (flag == "--rounds") options.rounds = atoi(argv[i + 1]);
    else if (flag == "--round-seconds") options.round_seconds = atof(argv[i + 1]);
    else {
      fprintf(stderr, "unknown flag %s; expected --threads, --requests, --rounds or "
                      "--round-seconds\n", argv[i]);
      return 2;
    }
  }
  if (memward_version() == nullptr) {
    fprintf(stderr, "memward is not loaded; link libmemward.so\n");
    return 1;
  }
  const std::string path = "/tmp/memward/" + std::to_string(getpid()) + ".sock";
  if (Get(path, "/stats") != 200) {
    fprintf(stderr, "no admin server at %s; check admin_socket in MEMWARD_CONF\n", path.c_str());
    return 1;
  }
  printf("memward %s, %d host threads, %u CPUs online\n", memward_version(), options.threads,
         static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN)));
  MeasureLatency(path, options);
  MeasureThroughputCost(path, options);
  return 0;
}
