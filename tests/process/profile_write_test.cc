// memward_heap_profile_write in pprof format from several threads at once,
// as the first compression of the process: zlib is loaded with dlopen on
// that first use, and every thread's file must be a complete gzip member.
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "accounting/gzip.h"
#include "accounting/sampler.h"
#include "memward/memward.h"

namespace memward {
namespace {

constexpr int kThreads = 8;

std::string ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

TEST(ProfileWrite, ConcurrentFirstPprofWrites) {
  ASSERT_EQ(dlopen("libz.so.1", RTLD_NOW | RTLD_NOLOAD), nullptr)
      << "zlib is loaded already, so the writes do not load it themselves";
  ASSERT_TRUE(accounting::SetSampleInterval(4096));
  std::vector<void*> sampled_blocks;  // live while the profiles are written
  for (int i = 0; i < 200; i++) sampled_blocks.push_back(malloc(10000));

  char directory[] = "/tmp/memward-profile-write-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  std::atomic<int> ready{0};
  std::vector<int> statuses(kThreads, -1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      const std::string path = std::string(directory) + "/heap-" + std::to_string(t) + ".pb.gz";
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      statuses[t] = memward_heap_profile_write(path.c_str(), MEMWARD_PROFILE_PPROF);
    });
  }
  for (std::thread& thread : threads) thread.join();

  for (int t = 0; t < kThreads; t++) {
    const std::string path = std::string(directory) + "/heap-" + std::to_string(t) + ".pb.gz";
    EXPECT_EQ(statuses[t], MEMWARD_OK) << "thread " << t;
    std::string inflated;
    EXPECT_TRUE(accounting::GzipDecompress(ReadFile(path), &inflated)) << path;
    EXPECT_FALSE(inflated.empty()) << path;
    unlink(path.c_str());
  }
  rmdir(directory);
  for (void* block : sampled_blocks) free(block);
}

}  // namespace
}  // namespace memward
