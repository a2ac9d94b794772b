// Thread churn workload: many short-lived threads, each allocating, writing,
// verifying and freeing a few objects of mixed sizes, at most --concurrent of
// them alive at a time. Each thread also hands one object to the main thread,
// which frees it after the thread has exited, so the allocator sees frees of
// memory whose thread (and thread cache) is gone.
//
// Checks: every object's contents, and the number of threads and objects.
#include <algorithm>
#include <cinttypes>
#include <cstdlib>
#include <thread>
#include <vector>

#include "workload_support.h"

namespace {

using workload::Fail;

// Runs one short-lived thread's work. Returns the object it hands back.
void* RunShortThread(uint64_t index, size_t objects, uint64_t seed) {
  workload::Random random(seed * 104729 + index);
  std::vector<void*> owned(objects);
  for (size_t i = 0; i < objects; ++i) {
    size_t size = random.LogUniform(16, 8192);
    owned[i] = std::malloc(size);
    if (owned[i] == nullptr) Fail("malloc(%zu) in thread %" PRIu64 " returned NULL", size, index);
    workload::FillObject(owned[i], size, (index << 20) | i);
  }
  // Free in a shuffled order, as a thread's objects rarely die in the order made.
  for (size_t i = objects; i > 1; --i) std::swap(owned[i - 1], owned[random.Next() % i]);
  for (void* object : owned) {
    uint64_t key;
    size_t size;
    if (!workload::VerifyObject(object, &key, &size) || (key >> 20) != index) {
      Fail("thread %" PRIu64 " found one of its objects corrupted (key %#" PRIx64 ")", index, key);
    }
    std::free(object);
  }

  size_t handoff_size = random.LogUniform(16, 1024);
  void* handoff = std::malloc(handoff_size);
  if (handoff == nullptr) Fail("malloc(%zu) for the hand-off returned NULL", handoff_size);
  workload::FillObject(handoff, handoff_size, index);
  return handoff;
}

}  // namespace

int main(int argc, char** argv) {
  workload::Options options(
      "workload_thread_churn",
      "Many short-lived threads allocate and free a few objects each and hand one back.");
  options.Add("threads", 300, 10000, "short-lived threads started in all");
  options.Add("concurrent", 4, 4, "threads alive at the same time");
  options.Add("objects", 32, 32, "objects each thread allocates and frees");
  options.Add("seed", 1, 1, "seed for object sizes");
  options.Parse(argc, argv);
  workload::CheckExpectedAllocator(options.program().c_str());

  const uint64_t total = options.Get("threads");
  const size_t concurrent = options.Get("concurrent");
  const size_t objects = options.Get("objects");
  const uint64_t seed = options.Get("seed");
  if (concurrent == 0) Fail("--concurrent must be at least 1");
  if (total >= (uint64_t{1} << 40)) Fail("--threads must be below 2^40");

  double start = workload::NowSeconds();
  std::vector<std::thread> wave;
  std::vector<void*> handoffs(concurrent);
  uint64_t started = 0;
  uint64_t handoffs_freed = 0;
  while (started < total) {
    size_t count = std::min<uint64_t>(concurrent, total - started);
    for (size_t i = 0; i < count; ++i) {
      uint64_t index = started + i;
      wave.emplace_back([&handoffs, i, index, objects, seed] {
        handoffs[i] = RunShortThread(index, objects, seed);
      });
    }
    for (std::thread& thread : wave) thread.join();
    wave.clear();

    // The threads are gone; free what they left behind.
    for (size_t i = 0; i < count; ++i) {
      uint64_t key;
      size_t size;
      if (!workload::VerifyObject(handoffs[i], &key, &size) || key != started + i) {
        Fail("the object handed back by thread %" PRIu64 " is corrupted", started + i);
      }
      std::free(handoffs[i]);
      ++handoffs_freed;
    }
    started += count;
  }
  double seconds = workload::NowSeconds() - start;

  if (handoffs_freed != total) {
    Fail("%" PRIu64 " hand-off objects were freed, expected %" PRIu64, handoffs_freed, total);
  }
  workload::PrintResult(options,
                        "threads_run=" + std::to_string(started) +
                            " objects_freed=" + std::to_string(started * (objects + 1)),
                        seconds);
  return 0;
}
