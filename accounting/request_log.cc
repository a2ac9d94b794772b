#include "accounting/request_log.h"

#include <time.h>

#include <atomic>

namespace memward::accounting {
namespace {

// Each field is an atomic so that a reader racing a writer reads defined
// values. The slot's `version` shows whether they belong to one record.
struct Slot {
  std::atomic<uint64_t> version{0};  // odd while a writer fills the slot
  std::atomic<uint64_t> sequence{0};
  std::atomic<uint32_t> tenant{0};
  std::atomic<uint32_t> had_arena{0};
  std::atomic<int64_t> end_unix_ns{0};
  std::atomic<uint64_t> peak_bytes{0};
  std::atomic<uint64_t> allocated_bytes{0};
  std::atomic<uint64_t> escaped_bytes{0};
  std::atomic<uint64_t> allocations{0};
  std::atomic<uint64_t> frees{0};
};

constinit Slot g_slots[kRequestLogCapacity];
constinit std::atomic<uint64_t> g_next_sequence{1};

int64_t RealtimeNs() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

}  // namespace

void LogEndedRequest(RequestRecord record) {
  const uint64_t sequence = g_next_sequence.fetch_add(1, std::memory_order_relaxed);
  Slot& slot = g_slots[sequence % kRequestLogCapacity];
  // Two writers meet on one slot only when kRequestLogCapacity requests end
  // while one of them is between these stores. The later one waits for the
  // version to turn even, which takes the earlier one's few stores.
  uint64_t version = slot.version.load(std::memory_order_relaxed);
  while (version % 2 != 0 ||
         !slot.version.compare_exchange_weak(version, version + 1, std::memory_order_acquire)) {
    version = slot.version.load(std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_release);
  constexpr auto kRelaxed = std::memory_order_relaxed;
  slot.sequence.store(sequence, kRelaxed);
  slot.tenant.store(record.tenant, kRelaxed);
  slot.had_arena.store(record.had_arena, kRelaxed);
  slot.end_unix_ns.store(RealtimeNs(), kRelaxed);
  slot.peak_bytes.store(record.peak_bytes, kRelaxed);
  slot.allocated_bytes.store(record.allocated_bytes, kRelaxed);
  slot.escaped_bytes.store(record.escaped_bytes, kRelaxed);
  slot.allocations.store(record.allocations, kRelaxed);
  slot.frees.store(record.frees, kRelaxed);
  slot.version.store(version + 2, std::memory_order_release);
}

size_t ReadRequestLog(RequestRecord* out, size_t capacity) {
  const uint64_t next = g_next_sequence.load(std::memory_order_acquire);
  size_t copied = 0;
  constexpr auto kRelaxed = std::memory_order_relaxed;
  for (uint64_t back = 1; back <= kRequestLogCapacity && back < next && copied < capacity;
       back++) {
    const Slot& slot = g_slots[(next - back) % kRequestLogCapacity];
    uint64_t before = slot.version.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;
    RequestRecord record;
    record.sequence = slot.sequence.load(kRelaxed);
    record.tenant = slot.tenant.load(kRelaxed);
    record.had_arena = slot.had_arena.load(kRelaxed);
    record.end_unix_ns = slot.end_unix_ns.load(kRelaxed);
    record.peak_bytes = slot.peak_bytes.load(kRelaxed);
    record.allocated_bytes = slot.allocated_bytes.load(kRelaxed);
    record.escaped_bytes = slot.escaped_bytes.load(kRelaxed);
    record.allocations = slot.allocations.load(kRelaxed);
    record.frees = slot.frees.load(kRelaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.version.load(kRelaxed) != before || record.sequence == 0) continue;
    out[copied++] = record;
  }
  return copied;
}

uint64_t EndedRequestCount() { return g_next_sequence.load(std::memory_order_relaxed) - 1; }

}  // namespace memward::accounting
