// Large-block workload: a loop that allocates blocks of 5 to 25 MiB, touches
// every page, verifies and frees them, keeping --live blocks alive at a time.
//
// This is the pattern of a service that builds large responses or buffers
// per request. jemalloc 5.3 serves blocks above its oversize_threshold
// (8 MiB by default) from a dedicated arena that purges freed pages at once.
// With Debian's 5.3.0, MALLOC_CONF=stats_print:true shows that arena making
// one madvise per free, so each new block is faulted in again page by page.
// The program checks the word it wrote to each page before freeing a block.
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "workload_support.h"

namespace {

using workload::Fail;

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kPage = 4096;

struct Block {
  unsigned char* data = nullptr;
  size_t size = 0;
  uint64_t key = 0;
};

// Writes one word per page and a mark in the last byte, which no word overlaps.
void Touch(const Block& block) {
  for (size_t offset = 0; offset + sizeof(uint64_t) < block.size; offset += kPage) {
    uint64_t word = workload::Mix(block.key + offset);
    std::memcpy(block.data + offset, &word, sizeof(word));
  }
  block.data[block.size - 1] = static_cast<unsigned char>(block.key);
}

bool Verify(const Block& block) {
  for (size_t offset = 0; offset + sizeof(uint64_t) < block.size; offset += kPage) {
    uint64_t word;
    std::memcpy(&word, block.data + offset, sizeof(word));
    if (word != workload::Mix(block.key + offset)) return false;
  }
  return block.data[block.size - 1] == static_cast<unsigned char>(block.key);
}

void Release(Block& block, size_t thread) {
  if (block.data == nullptr) return;
  if (!Verify(block)) {
    Fail("thread %zu: a block of %zu bytes (key %" PRIu64 ") is corrupted", thread, block.size,
         block.key);
  }
  std::free(block.data);
  block = Block{};
}

struct ThreadResult {
  uint64_t blocks = 0;
  uint64_t bytes = 0;
};

void Run(size_t thread, uint64_t iterations, size_t live, size_t min_bytes, size_t max_bytes,
         uint64_t seed, ThreadResult& result) {
  workload::Random random(seed * 2654435761u + thread);
  std::vector<Block> blocks(live);
  for (uint64_t i = 0; i < iterations; ++i) {
    Block& block = blocks[i % live];
    Release(block, thread);
    // Any byte count in the range, so the blocks fall into many size classes.
    block.size = random.Between(min_bytes, max_bytes);
    block.data = static_cast<unsigned char*>(std::malloc(block.size));
    if (block.data == nullptr) Fail("malloc(%zu) returned NULL", block.size);
    block.key = (uint64_t{thread} << 40) | i;
    Touch(block);
    ++result.blocks;
    result.bytes += block.size;
  }
  for (Block& block : blocks) Release(block, thread);
}

}  // namespace

int main(int argc, char** argv) {
  workload::Options options(
      "workload_large_blocks",
      "Allocates, touches and frees blocks of --min-mib to --max-mib MiB in a loop.");
  options.Add("threads", 1, 1, "threads, each running its own loop");
  options.Add("iterations", 12, 200, "blocks each thread allocates");
  options.Add("live", 2, 2, "blocks each thread keeps alive at a time");
  options.Add("min-mib", 5, 5, "smallest block in MiB");
  options.Add("max-mib", 25, 25, "largest block in MiB");
  options.Add("seed", 1, 1, "seed for block sizes");
  options.Parse(argc, argv);
  workload::CheckExpectedAllocator(options.program().c_str());

  const size_t threads = options.Get("threads");
  const size_t live = options.Get("live");
  const size_t min_bytes = options.Get("min-mib") * kMiB;
  const size_t max_bytes = options.Get("max-mib") * kMiB;
  if (threads == 0 || live == 0) Fail("--threads and --live must be at least 1");
  if (min_bytes == 0 || min_bytes > max_bytes) {
    Fail("--min-mib must be at least 1 and at most --max-mib");
  }

  std::vector<ThreadResult> results(threads);
  double start = workload::NowSeconds();
  std::vector<std::thread> workers;
  for (size_t i = 0; i < threads; ++i) {
    workers.emplace_back(Run, i, options.Get("iterations"), live, min_bytes, max_bytes,
                         options.Get("seed"), std::ref(results[i]));
  }
  for (std::thread& worker : workers) worker.join();
  double seconds = workload::NowSeconds() - start;

  uint64_t blocks = 0;
  uint64_t bytes = 0;
  for (const ThreadResult& result : results) {
    blocks += result.blocks;
    bytes += result.bytes;
  }
  if (blocks != threads * options.Get("iterations")) {
    Fail("%" PRIu64 " blocks were allocated, expected %" PRIu64, blocks,
         threads * options.Get("iterations"));
  }
  workload::PrintResult(
      options, "blocks=" + std::to_string(blocks) + " bytes_touched=" + std::to_string(bytes),
      seconds);
  return 0;
}
