// A byte-bounded, exact-match cache of upstream responses with a TTL, and
// its registration as a memward reclaimer.
#pragma once

#include <memward/memward.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "config.h"

namespace memward::gateway {

struct CachedResponse {
  std::string content_type;
  std::string body;  // a JSON body, or a whole event stream ending in "data: [DONE]"
};

struct CacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t inserts = 0;
  std::uint64_t evictions = 0;        // LRU evictions to stay under max_bytes
  std::uint64_t expirations = 0;      // entries dropped after their TTL
  std::uint64_t reclaimed_bytes = 0;  // bytes freed at memward's request
  std::uint64_t unused_reclaimed_bytes = 0;  // bytes freed by ReclaimUnused (unused or expired)
  std::uint64_t bytes = 0;
  std::uint64_t entries = 0;
};

// Thread-safe: one mutex guards the map, the LRU list and the byte count.
// memward calls the reclaimer on its warden thread, which takes the same
// mutex. Removed entries are freed after the mutex is released, to keep the
// critical section short. A hit keeps its body alive through a shared_ptr, so an
// eviction never frees a body that is still being sent.
class ResponseCache {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ResponseCache(const CacheSettings& settings);
  ~ResponseCache();
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  bool enabled() const { return settings_.max_bytes != 0; }
  std::uint64_t max_entry_bytes() const { return settings_.max_entry_bytes; }

  // Returns the live entry for `key`, or null (a miss, or an expired entry,
  // which is dropped).
  std::shared_ptr<const CachedResponse> Lookup(const std::string& key);

  // Stores a response, evicting the least recently used entries to stay
  // under max_bytes. Returns false when it is too large to store.
  bool Insert(std::string key, std::shared_ptr<const CachedResponse> response);

  // Registers the cache as a memward reclaimer. Logs on stderr and returns
  // false when memward rejects it (not loaded, or no reclaimers in this
  // memward). The cache then works without it.
  bool RegisterReclaimer();

  // Frees at least `target_bytes` by evicting expired, then least recently
  // used entries. Returns the bytes freed.
  std::uint64_t Reclaim(std::uint64_t target_bytes);

  // Drops the expired entries and those neither stored nor read during the
  // last `unused_for`. Returns the bytes freed.
  std::uint64_t ReclaimUnused(Clock::duration unused_for);
  std::uint64_t bytes() const;

  CacheStats stats() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const CachedResponse> response;
    Clock::time_point expires;
    Clock::time_point last_used;  // the insert or the latest hit
    std::uint64_t charged_bytes = 0;
  };
  using Lru = std::list<Entry>;  // most recently used first

  // Removes the entry and adds it to `released`. Requires mutex_.
  void EraseLocked(Lru::iterator entry, std::list<Entry>& released);
  // Erases expired entries until `target_bytes` are freed. Returns the bytes
  // freed. Requires mutex_.
  std::uint64_t EraseExpiredLocked(Clock::time_point now, std::uint64_t target_bytes,
                                   std::list<Entry>& released);
  // Requires mutex_.
  void EvictLocked(std::uint64_t target_bytes, std::list<Entry>& released);

  const CacheSettings settings_;
  mutable std::mutex mutex_;
  Lru lru_;                                                  // guarded by mutex_
  std::unordered_map<std::string_view, Lru::iterator> index_;  // guarded by mutex_; views of Entry::key
  std::uint64_t bytes_ = 0;                                  // guarded by mutex_
  CacheStats stats_;                                         // guarded by mutex_
  bool registered_ = false;
  memward_reclaimer_id reclaimer_id_ = 0;
};

}  // namespace memward::gateway
