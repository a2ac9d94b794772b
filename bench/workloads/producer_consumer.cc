// Producer/consumer workload: producers allocate messages of mixed sizes and
// push them, in small batches, into one bounded queue; consumers pop them,
// verify their contents and free them, so nearly every free happens on a
// thread other than the one that allocated the message.
//
// Checks: every message's contents, that the consumers freed exactly as many
// messages as the producers made, and that the sums of their keys agree.
#include <atomic>
#include <algorithm>
#include <cinttypes>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "workload_support.h"

namespace {

using workload::Fail;

// A bounded multi-producer, multi-consumer queue of message pointers.
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}

  // Blocks until the whole batch fits, then appends it.
  void PushBatch(std::vector<void*>& batch) {
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return items_.size() + batch.size() <= capacity_; });
    items_.insert(items_.end(), batch.begin(), batch.end());
    lock.unlock();
    not_empty_.notify_all();
    batch.clear();
  }

  // Moves up to `limit` messages into `out`. Returns false once the queue is
  // empty and every producer has called ProducerDone.
  bool PopBatch(std::vector<void*>& out, size_t limit) {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return !items_.empty() || producers_left_ == 0; });
    if (items_.empty()) return false;
    size_t count = std::min(limit, items_.size());
    out.assign(items_.begin(), items_.begin() + count);
    items_.erase(items_.begin(), items_.begin() + count);
    lock.unlock();
    not_full_.notify_all();
    return true;
  }

  void SetProducers(size_t producers) { producers_left_ = producers; }

  void ProducerDone() {
    {
      std::lock_guard lock(mutex_);
      --producers_left_;
    }
    not_empty_.notify_all();
  }

  size_t size() {
    std::lock_guard lock(mutex_);
    return items_.size();
  }

 private:
  const size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<void*> items_;
  size_t producers_left_ = 0;
};

struct Totals {
  std::atomic<uint64_t> produced{0};
  std::atomic<uint64_t> consumed{0};
  std::atomic<uint64_t> produced_key_sum{0};
  std::atomic<uint64_t> consumed_key_sum{0};
};

size_t MessageSize(workload::Random& random) {
  // Messages of a chat or log pipeline: mostly 32 B to 4 KiB, a few 16 KiB.
  if (random.Next() % 50 == 0) return 16384;
  return random.LogUniform(32, 4096);
}

void Produce(BoundedQueue& queue, Totals& totals, size_t producer, uint64_t messages,
             size_t batch_size, uint64_t seed) {
  workload::Random random(seed * 7919 + producer);
  std::vector<void*> batch;
  batch.reserve(batch_size);
  uint64_t key_sum = 0;
  for (uint64_t i = 0; i < messages; ++i) {
    uint64_t key = (uint64_t{producer} << 40) | i;
    size_t size = MessageSize(random);
    void* message = std::malloc(size);
    if (message == nullptr) Fail("malloc(%zu) for a message returned NULL", size);
    workload::FillObject(message, size, key);
    key_sum += key;
    batch.push_back(message);
    if (batch.size() == batch_size) queue.PushBatch(batch);
  }
  if (!batch.empty()) queue.PushBatch(batch);
  totals.produced.fetch_add(messages);
  totals.produced_key_sum.fetch_add(key_sum);
  queue.ProducerDone();
}

void Consume(BoundedQueue& queue, Totals& totals, size_t consumer, size_t batch_size) {
  std::vector<void*> batch;
  batch.reserve(batch_size);
  uint64_t count = 0;
  uint64_t key_sum = 0;
  while (queue.PopBatch(batch, batch_size)) {
    for (void* message : batch) {
      uint64_t key;
      size_t size;
      if (!workload::VerifyObject(message, &key, &size)) {
        Fail("consumer %zu received a corrupted message (header key %#" PRIx64 ", size %zu)",
             consumer, key, size);
      }
      std::free(message);
      key_sum += key;
      ++count;
    }
    batch.clear();
  }
  totals.consumed.fetch_add(count);
  totals.consumed_key_sum.fetch_add(key_sum);
}

}  // namespace

int main(int argc, char** argv) {
  workload::Options options(
      "workload_producer_consumer",
      "Producers allocate messages into a bounded queue; consumers verify and free them.");
  options.Add("producers", 2, 2, "producer threads");
  options.Add("consumers", 2, 2, "consumer threads");
  options.Add("messages", 50000, 1000000, "messages each producer makes");
  options.Add("capacity", 1024, 4096, "queue capacity in messages");
  options.Add("batch", 16, 16, "messages pushed or popped under one lock");
  options.Add("seed", 1, 1, "seed for message sizes");
  options.Parse(argc, argv);
  workload::CheckExpectedAllocator(options.program().c_str());

  const size_t producers = options.Get("producers");
  const size_t consumers = options.Get("consumers");
  const uint64_t messages = options.Get("messages");
  const size_t batch = options.Get("batch");
  const size_t capacity = options.Get("capacity");
  if (producers == 0 || consumers == 0) Fail("--producers and --consumers must be at least 1");
  if (batch == 0 || batch > capacity) Fail("--batch must be between 1 and --capacity");
  if (messages >= (uint64_t{1} << 40)) Fail("--messages must be below 2^40");

  BoundedQueue queue(capacity);
  queue.SetProducers(producers);
  Totals totals;
  double start = workload::NowSeconds();
  std::vector<std::thread> threads;
  for (size_t i = 0; i < consumers; ++i) {
    threads.emplace_back(Consume, std::ref(queue), std::ref(totals), i, batch);
  }
  for (size_t i = 0; i < producers; ++i) {
    threads.emplace_back(Produce, std::ref(queue), std::ref(totals), i, messages, batch,
                         options.Get("seed"));
  }
  for (std::thread& thread : threads) thread.join();
  double seconds = workload::NowSeconds() - start;

  if (totals.produced != producers * messages) {
    Fail("producers made %" PRIu64 " messages, expected %" PRIu64, totals.produced.load(),
         producers * messages);
  }
  if (totals.consumed != totals.produced) {
    Fail("consumers freed %" PRIu64 " messages of %" PRIu64, totals.consumed.load(),
         totals.produced.load());
  }
  if (totals.consumed_key_sum != totals.produced_key_sum) {
    Fail("the keys of the consumed messages do not match the keys produced");
  }
  if (queue.size() != 0) Fail("%zu messages were left in the queue", queue.size());
  workload::PrintResult(options, "messages_consumed=" + std::to_string(totals.consumed.load()),
                        seconds);
  return 0;
}
