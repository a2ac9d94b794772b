// A program whose cache grows without bound: it inserts `total_mib` MiB of
// 256 KiB values into a memward::LruCache with no size bound of its own, at
// `rate_mib_per_s`, and prints what happened as key=value lines.
//
// Usage: cache_growth reclaimer|none TOTAL_MIB RATE_MIB_PER_S
//   reclaimer  registers the cache with memward, so the warden can shrink it
//   none       the cache is never registered and only grows
// Output: max_level (0 normal .. 3 critical), reclaimed_bytes, cache_bytes,
// inserted_bytes, rss_bytes (VmRSS at the end), hwm_bytes (VmHWM).
// Exit status: 0 on success, 2 for bad arguments, 3 when memward is missing.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "memward/lru_cache.hpp"

namespace {

constexpr size_t kValueBytes = 256 * 1024;

// Returns the value in bytes of a "Name:  123 kB" line of /proc/self/status.
uint64_t StatusKiloBytes(const char* name) {
  std::ifstream status("/proc/self/status");
  std::string line;
  const size_t length = strlen(name);
  while (std::getline(status, line)) {
    if (line.compare(0, length, name) == 0 && line.size() > length && line[length] == ':') {
      return std::strtoull(line.c_str() + length + 1, nullptr, 10) * 1024;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: cache_growth reclaimer|none TOTAL_MIB RATE_MIB_PER_S\n");
    return 2;
  }
  const std::string mode = argv[1];
  const uint64_t total_bytes = std::strtoull(argv[2], nullptr, 10) << 20;
  const double rate = std::strtod(argv[3], nullptr);
  if ((mode != "reclaimer" && mode != "none") || total_bytes == 0 || rate <= 0) {
    fprintf(stderr, "cache_growth: invalid arguments\n");
    return 2;
  }
  if (!memward::IsLoaded()) {
    fprintf(stderr, "cache_growth: memward is not loaded\n");
    return 3;
  }

  memward::LruCache<uint64_t, std::vector<char>> cache(SIZE_MAX);
  if (mode == "reclaimer") {
    memward::Status status = cache.Register("cache_growth", 0, 5000);
    if (!status.ok()) {
      fprintf(stderr, "cache_growth: register failed: %s\n", status.message().c_str());
      return 3;
    }
  }

  const auto start = std::chrono::steady_clock::now();
  const double seconds_per_value = static_cast<double>(kValueBytes) / (rate * 1024 * 1024);
  int max_level = 0;
  uint64_t inserted = 0;
  for (uint64_t key = 0; inserted < total_bytes; key++) {
    std::vector<char> value(kValueBytes);
    memset(value.data(), static_cast<int>(key), value.size());  // make the pages resident
    cache.Put(key, std::move(value));
    inserted += kValueBytes;
    if (auto level = memward::CurrentPressure()) {
      max_level = std::max(max_level, static_cast<int>(*level));
    }
    const auto due = start + std::chrono::duration<double>(seconds_per_value * (key + 1));
    std::this_thread::sleep_until(due);
  }

  printf("max_level=%d\n", max_level);
  printf("reclaimed_bytes=%llu\n", static_cast<unsigned long long>(cache.reclaimed_bytes()));
  printf("cache_bytes=%llu\n", static_cast<unsigned long long>(cache.bytes()));
  printf("inserted_bytes=%llu\n", static_cast<unsigned long long>(inserted));
  printf("rss_bytes=%llu\n", static_cast<unsigned long long>(StatusKiloBytes("VmRSS")));
  printf("hwm_bytes=%llu\n", static_cast<unsigned long long>(StatusKiloBytes("VmHWM")));
  return 0;
}
