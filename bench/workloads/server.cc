// Server-like workload: every thread plays both sides of a request.
//
// A thread "accepts" requests: it allocates a request object of a mixed size,
// fills it, allocates and frees a few short-lived scratch buffers (the parsed
// headers of a real server), and hands the request to another thread. That
// thread verifies the request, frees it (a cross-thread free), allocates a
// response of a size derived from the request's key and hands the response
// back. The accepting thread verifies and frees the response, again a free of
// memory another thread allocated. Each thread keeps at most --inflight
// requests outstanding, so the live set stays bounded.
//
// Checks: every object's contents on arrival, that each thread got exactly one
// response per request, and that the keys of the responses match the keys of
// the requests it sent.
#include <atomic>
#include <cinttypes>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "workload_support.h"

namespace {

using workload::Fail;

constexpr uint64_t kResponseBit = uint64_t{1} << 63;
constexpr uint64_t kThreadShift = 40;

// A thread's incoming objects, requests and responses alike.
struct Inbox {
  std::mutex mutex;
  std::condition_variable ready;
  std::vector<void*> items;
  bool waiting = false;
};

struct Shared {
  explicit Shared(size_t threads) : inboxes(threads) {}
  std::vector<Inbox> inboxes;
  std::atomic<size_t> threads_done{0};
};

size_t ResponseSize(uint64_t request_key) {
  workload::Random random(request_key);
  return workload::MixedSize(random);
}

struct ThreadResult {
  uint64_t requests_sent = 0;
  uint64_t requests_served = 0;
  uint64_t responses_received = 0;
  uint64_t sent_key_sum = 0;
  uint64_t received_key_sum = 0;
  uint64_t bytes_allocated = 0;
};

void Deliver(Shared& shared, size_t destination, std::vector<void*>& batch) {
  if (batch.empty()) return;
  Inbox& inbox = shared.inboxes[destination];
  bool wake = false;
  {
    std::lock_guard lock(inbox.mutex);
    inbox.items.insert(inbox.items.end(), batch.begin(), batch.end());
    wake = inbox.waiting;
  }
  if (wake) inbox.ready.notify_one();
  batch.clear();
}

void RunThread(Shared& shared, size_t self, uint64_t requests, uint64_t inflight_limit,
               uint64_t seed, ThreadResult& result) {
  const size_t thread_count = shared.inboxes.size();
  workload::Random random(seed * 1000003 + self);
  std::vector<std::vector<void*>> outgoing(thread_count);
  std::vector<void*> incoming;
  uint64_t inflight = 0;
  bool counted_done = false;

  while (true) {
    // Accept new requests up to the in-flight limit.
    while (result.requests_sent < requests && inflight < inflight_limit) {
      uint64_t key = (uint64_t{self} << kThreadShift) | result.requests_sent;
      size_t size = workload::MixedSize(random);
      void* request = std::malloc(size);
      if (request == nullptr) Fail("malloc(%zu) for a request returned NULL", size);
      workload::FillObject(request, size, key);
      result.bytes_allocated += size;

      // Scratch buffers that live only while the request is parsed.
      void* scratch[4];
      for (void*& buffer : scratch) {
        size_t scratch_size = random.Between(16, 256);
        buffer = std::malloc(scratch_size);
        if (buffer == nullptr) Fail("malloc(%zu) for scratch returned NULL", scratch_size);
        workload::FillObject(buffer, scratch_size, key ^ scratch_size);
      }
      for (void* buffer : scratch) std::free(buffer);

      size_t destination = thread_count == 1
                               ? self
                               : (self + 1 + random.Next() % (thread_count - 1)) % thread_count;
      outgoing[destination].push_back(request);
      result.sent_key_sum += key;
      ++result.requests_sent;
      ++inflight;
      if (outgoing[destination].size() >= 64) Deliver(shared, destination, outgoing[destination]);
    }

    // Serve requests and collect responses.
    Inbox& inbox = shared.inboxes[self];
    {
      std::unique_lock lock(inbox.mutex);
      incoming.swap(inbox.items);
    }
    for (void* object : incoming) {
      uint64_t key;
      size_t size;
      if (!workload::VerifyObject(object, &key, &size)) {
        Fail("thread %zu received a corrupted object (header key %#" PRIx64 ", size %zu)", self,
             key, size);
      }
      std::free(object);
      if ((key & kResponseBit) == 0) {
        size_t response_size = ResponseSize(key);
        void* response = std::malloc(response_size);
        if (response == nullptr) Fail("malloc(%zu) for a response returned NULL", response_size);
        workload::FillObject(response, response_size, key | kResponseBit);
        result.bytes_allocated += response_size;
        size_t origin = (key & ~kResponseBit) >> kThreadShift;
        if (origin >= thread_count) Fail("request key %#" PRIx64 " names no thread", key);
        outgoing[origin].push_back(response);
        ++result.requests_served;
      } else {
        uint64_t request_key = key & ~kResponseBit;
        if ((request_key >> kThreadShift) != self) {
          Fail("thread %zu received the response to request %#" PRIx64 " of another thread",
               self, request_key);
        }
        if (size != ResponseSize(request_key)) {
          Fail("response to request %#" PRIx64 " has size %zu, expected %zu", request_key, size,
               ResponseSize(request_key));
        }
        result.received_key_sum += request_key;
        ++result.responses_received;
        --inflight;
      }
    }
    bool had_work = !incoming.empty();
    incoming.clear();
    for (size_t destination = 0; destination < thread_count; ++destination) {
      Deliver(shared, destination, outgoing[destination]);
    }

    if (!counted_done && result.responses_received == requests) {
      counted_done = true;
      shared.threads_done.fetch_add(1, std::memory_order_acq_rel);
    }
    if (shared.threads_done.load(std::memory_order_acquire) == thread_count) break;

    // Nothing to do until another thread sends something: wait briefly.
    bool can_send = result.requests_sent < requests && inflight < inflight_limit;
    if (!had_work && !can_send) {
      std::unique_lock lock(inbox.mutex);
      if (inbox.items.empty()) {
        inbox.waiting = true;
        inbox.ready.wait_for(lock, std::chrono::milliseconds(1));
        inbox.waiting = false;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  workload::Options options(
      "workload_server",
      "Threads allocate requests and responses of mixed sizes and free the ones other threads "
      "allocated.");
  options.Add("threads", 2, 4, "worker threads");
  options.Add("requests", 20000, 300000, "requests each thread sends");
  options.Add("inflight", 128, 256, "maximum requests a thread has outstanding");
  options.Add("seed", 1, 1, "seed for sizes and destinations");
  options.Parse(argc, argv);
  workload::CheckExpectedAllocator(options.program().c_str());

  const size_t threads = options.Get("threads");
  const uint64_t requests = options.Get("requests");
  if (threads == 0 || threads >= 1024) Fail("--threads must be between 1 and 1023");
  if (requests >= (uint64_t{1} << kThreadShift)) Fail("--requests must be below 2^40");
  if (options.Get("inflight") == 0) Fail("--inflight must be at least 1");

  Shared shared(threads);
  std::vector<ThreadResult> results(threads);
  double start = workload::NowSeconds();
  std::vector<std::thread> workers;
  for (size_t i = 0; i < threads; ++i) {
    workers.emplace_back(RunThread, std::ref(shared), i, requests, options.Get("inflight"),
                         options.Get("seed"), std::ref(results[i]));
  }
  for (std::thread& worker : workers) worker.join();
  double seconds = workload::NowSeconds() - start;

  uint64_t served = 0;
  uint64_t allocated = 0;
  for (size_t i = 0; i < threads; ++i) {
    const ThreadResult& result = results[i];
    if (result.responses_received != requests) {
      Fail("thread %zu received %" PRIu64 " responses for %" PRIu64 " requests", i,
           result.responses_received, requests);
    }
    if (result.received_key_sum != result.sent_key_sum) {
      Fail("thread %zu: the keys of its responses do not match the keys of its requests", i);
    }
    if (!shared.inboxes[i].items.empty()) {
      Fail("thread %zu finished with %zu objects still in its inbox", i,
           shared.inboxes[i].items.size());
    }
    served += result.requests_served;
    allocated += result.bytes_allocated;
  }
  if (served != requests * threads) {
    Fail("%" PRIu64 " requests were served, expected %" PRIu64, served, requests * threads);
  }
  workload::PrintResult(options,
                        "requests_served=" + std::to_string(served) +
                            " bytes_allocated=" + std::to_string(allocated),
                        seconds);
  return 0;
}
